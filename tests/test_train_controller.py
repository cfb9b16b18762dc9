"""The controller stage of a gained design: ES over whole runs, around frozen nets, on
synthetic tasks and digits attacks."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zominimize  # noqa: E402
from zominimize.learned import gain, weights  # noqa: E402
from zominimize.train import attacks  # noqa: E402
from zominimize.train.config import ControllerConfig, StageConfig, TrainConfig  # noqa: E402
from zominimize.train.controller import ControllerStage, PopulationGain  # noqa: E402
from zominimize.train.evolution import es_update  # noqa: E402
from zominimize.train.trainer import Trainer  # noqa: E402


def tiny_config(**controller):
    settings = dict(iterations=4, pairs=2, steps=12, batch=2, batches=1, attack_share=0.5,
                    attack_sides=(8,), dims=(10,), validate_every=2)
    settings.update(controller)
    return TrainConfig(name="tiny", step_form="adam-blend-slow-gain", dims=(8,), batch=2,
                       steps=20, truncation=10, families={"quadratic": 1.0, "nclsq": 1.0},
                       stage1=StageConfig(episodes=2, lr=1e-2),
                       stage2=StageConfig(episodes=0, lr=1e-2), validate_every=2,
                       validation_tasks=1, controller=ControllerConfig(**settings))


def _theta(net):
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().clone()


def test_an_es_step_descends_a_linear_score_and_ranks_make_it_scale_free():
    gen = torch.Generator().manual_seed(0)
    c = torch.randn(6, generator=gen, dtype=torch.float64)
    theta = torch.zeros(6, dtype=torch.float64)
    noise = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    moments = (torch.zeros(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64))
    population = torch.cat([theta + 0.1 * noise, theta - 0.1 * noise])
    moved, (m, v) = es_update(theta, moments, 1, population @ c, noise, 0.1, 0.01)
    assert float((moved - theta) @ c) < 0  # downhill
    assert float((moved - theta).abs().max()) == pytest.approx(0.01, rel=1e-4)  # Adam's step
    again, _ = es_update(theta, moments, 1, 1e6 * (population @ c) - 3, noise, 0.1, 0.01)
    assert torch.equal(again, moved)  # only the scores' ranks count


def test_a_population_is_its_members_side_by_side():
    gen = torch.Generator().manual_seed(0)
    n = _theta(gain.GainNet()).numel()
    theta = torch.randn(3, n, generator=gen, dtype=torch.float64)
    features = torch.randn(3, 5, gain.N_FEATURES, generator=gen, dtype=torch.float64)
    together = PopulationGain(theta)(features)
    for p in range(3):
        member = gain.GainNet()
        torch.nn.utils.vector_to_parameters(theta[p], member.parameters())
        with torch.no_grad():
            torch.testing.assert_close(together[p], member(features[p]))
        assert float(PopulationGain(theta).start[p]) == float(member.start.detach())


def test_population_members_score_as_they_would_alone():
    """Common random numbers: a member's score does not depend on the others."""
    torch.set_num_threads(1)
    config = tiny_config()
    stage = ControllerStage(config, config.design.make_update())
    task, factor = stage.draw_batch(torch.Generator().manual_seed(3))
    theta = stage.theta + 0.3 * torch.randn(2, stage.theta.numel(), dtype=torch.float64,
                                            generator=torch.Generator().manual_seed(4))
    both = stage.log_ratios(theta, task, factor, seed=5, steps=stage.spec.steps)
    alone = stage.log_ratios(theta[1:], task, factor, seed=5, steps=stage.spec.steps)
    torch.testing.assert_close(both[1:], alone)
    assert not torch.allclose(both[0], both[1])


def test_several_run_lengths_are_drawn_per_batch_and_one_length_draws_nothing():
    """With steps a list each task batch's runs last one of its lengths (the held-out
    batches take them in turn); with one length the stage's draws are those of an int."""
    fixed = ControllerStage(tiny_config(), tiny_config().design.make_update())
    listed = ControllerStage(tiny_config(steps=(12,)), tiny_config().design.make_update())
    for (*draws, lengths), (*again, same) in zip((fixed._draws() for _ in range(3)),
                                                 (listed._draws() for _ in range(3))):
        assert lengths == same == [12]
        torch.testing.assert_close(draws[2], again[2])
    config = tiny_config(steps=(3, 7), batches=2)
    mixed = ControllerStage(config, config.design.make_update())
    drawn = [length for _ in range(10) for length in mixed._draws()[3]]
    assert set(drawn) == {3, 7}
    held_out = [steps for *_, steps in mixed.validation_set]
    assert held_out == [(3, 7)[i % 2] for i in range(len(held_out))]
    assert set(mixed.validate()) == {"0.1", "1.0", "10.0"}


@pytest.mark.parametrize("steps", [0, (), (5, 0), 2.5])
def test_a_run_length_that_is_not_a_positive_integer_is_refused(steps):
    with pytest.raises(ValueError, match="controller.steps must be a positive integer"):
        tiny_config(steps=steps)


def test_the_stage_trains_the_controller_only_and_resumes_exactly(tmp_path):
    torch.set_num_threads(1)
    config = tiny_config()
    whole = Trainer(config, tmp_path / "whole")
    whole.run(report=lambda line: None)
    frozen = {k: v.clone() for k, v in whole.update_net.rnn.state_dict().items()}
    assert whole.controller.iteration == 4
    assert not torch.equal(whole.controller.theta, _theta(gain.GainNet()))
    torch.testing.assert_close(_theta(whole.update_net.gain), whole.controller.theta)

    reports = []

    def interrupt(line):  # stop at the controller stage's first validation (iteration 2)
        reports.append(line)
        if line.startswith("controller"):
            raise KeyboardInterrupt

    first = Trainer(config, tmp_path / "part")
    with pytest.raises(KeyboardInterrupt):
        first.run(report=interrupt)
    again = Trainer(config, tmp_path / "part")
    assert again.resume() and again.progress["stage"] == "controller"
    assert again.controller.iteration == 2
    again.run(report=lambda line: None)
    assert torch.equal(again.controller.theta, whole.controller.theta)
    for key, value in again.update_net.rnn.state_dict().items():
        assert torch.equal(value, frozen[key])  # stages 1 and 2 as the whole run left them


def test_the_trained_controller_ships_in_the_weight_set(tmp_path):
    torch.set_num_threads(1)
    trainer = Trainer(tiny_config(iterations=2), tmp_path)
    trainer.run(report=lambda line: None)
    trainer.write_weights("test")
    entry, tensors = weights.load(str(tmp_path), "tiny")
    assert entry["architecture"]["gain"] == gain.ARCHITECTURE
    assert list(entry["training"]["controller"]["validation"]) == ["2"]
    torch.testing.assert_close(
        torch.cat([tensors["update"][f"gain.{name}"].reshape(-1)
                   for name in ("w1", "b1", "w2", "b2", "start")]), trainer.controller.theta)
    res = zominimize.minimize(lambda x: float(np.sum((x - 1.0) ** 2)), np.zeros(12),
                              method="l2l-zo", options={"weights": str(tmp_path), "seed": 0,
                                                        "maxiter": 30, "fallback": False})
    assert res.fallback is None and res.fun < 12.0


def test_the_stage_ships_theta_averaged_over_its_last_iterations(tmp_path):
    torch.set_num_threads(1)
    trainer = Trainer(tiny_config(average_last=3), tmp_path)
    thetas = []
    step = trainer.controller.step

    def recording_step():
        row = step()
        thetas.append(trainer.controller.theta.clone())
        return row

    trainer.controller.step = recording_step
    trainer.run(report=lambda line: None)
    mean = torch.stack(thetas[-3:]).mean(0)
    torch.testing.assert_close(trainer.controller.result(), mean)
    assert torch.equal(trainer.controller.theta, thetas[-1])  # Adam's iterate goes on as it was
    torch.testing.assert_close(_theta(trainer.update_net.gain), mean)
    validated = [row["iteration"] for row in trainer.controller.history if "validation" in row]
    assert validated == [2, 4, "mean of the last 3"]
    trainer.run(report=lambda line: None)  # a finished stage resumed adds nothing
    assert len(trainer.controller.history) == 5
    trainer.write_weights("test")
    entry, tensors = weights.load(str(tmp_path), "tiny")
    assert list(entry["training"]["controller"]["validation"]) == ["2", "4",
                                                                    "mean of the last 3"]


def test_digits_attack_tasks_are_batched_nonnegative_and_start_unsolved():
    pytest.importorskip("sklearn")
    net, right = attacks.classifier(8)
    assert float(right.double().mean()) > 0.95
    task = attacks.sample(torch.Generator().manual_seed(0), 3, 8)
    assert task.size == (3, 64)
    f0 = task.fun(task.x0)
    assert bool((f0 > 0).all())  # correctly classified: the margin term is positive
    points = task.x0 + torch.randn(5, 3, 64, dtype=torch.float64)
    values = task.fun(points)
    assert values.shape == (5, 3) and bool((values >= 0).all())
    assert torch.allclose(values[2], task.fun(points[2]))
