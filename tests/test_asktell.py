"""The ask/tell ZOOptimizer: equivalence with minimize, call order, checkpoints, seeds."""

import copy
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import zominimize
from conftest import D, assert_same_run
from objectives import shifted_quadratic
from zominimize import OptimizerStateError, ZOOptimizer

OPTIONS = {"seed": 5, "q": 4, "maxiter": 40, "ftol": 0}
TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


def make(method, x0=None, **options):
    x0 = np.full(D, 0.2) if x0 is None else x0
    return ZOOptimizer(method, x0, **{**OPTIONS, **options})


def drive(opt, iterations=None, record=None):
    """Run ask/tell; stop after ``iterations`` (None: to the end). Record asked points."""
    done = 0
    while opt.status is None and (iterations is None or done < iterations):
        points = opt.ask()
        if record is not None:
            record.append(points.copy())
        opt.tell(points, [shifted_quadratic(p) for p in points])
        done += 1
    return opt


@pytest.mark.parametrize("options", [
    {},
    {"estimator": "antithetic", "directions": "sphere"},
    {"ftol": 1e-4, "patience": 5, "maxiter": 500},
    {"maxfev": 33},
], ids=["default", "antithetic-sphere", "ftol", "maxfev"])
def test_manual_loop_equals_minimize(method, options):
    opt = drive(make(method, **options))
    res = zominimize.minimize(shifted_quadratic, np.full(D, 0.2), method=method,
                              options={**OPTIONS, **options})
    assert opt.status is not None
    assert_same_run(opt.result(), res)
    assert opt.result().method == res.method


def test_manual_loop_with_bounds_equals_minimize(method):
    bounds = [(-0.3, 0.3)] * D
    opt = drive(ZOOptimizer(method, np.zeros(D), bounds, **OPTIONS))
    res = zominimize.minimize(shifted_quadratic, np.zeros(D), method=method, bounds=bounds,
                              options=OPTIONS)
    assert_same_run(opt.result(), res)


def test_properties_of_the_optimizer(method):
    opt = make(method)
    assert opt.status is None and opt.nit == 0 and opt.nfev == 0
    assert opt.f_best == np.inf
    x = opt.x
    x[:] = 99  # a copy
    np.testing.assert_array_equal(opt.x, np.full(D, 0.2))
    assert opt.method in zominimize.method_names()
    assert opt.settings["q"] == 4
    drive(opt, 3)
    assert opt.nit == 3 and opt.nfev == 15
    assert opt.result().status == zominimize.Status.RUNNING
    assert opt.result().success is False


def test_ask_twice_returns_the_same_points(method):
    opt = make(method)
    first = opt.ask()
    first[:] = 123.0  # the caller's copy: changing it changes nothing
    second = opt.ask()
    assert not np.array_equal(first, second)
    third = opt.ask()
    np.testing.assert_array_equal(second, third)
    assert second is not third
    opt.tell(third, [shifted_quadratic(p) for p in third])
    assert opt.nit == 1
    # and the next ask draws new points
    assert not np.array_equal(opt.ask(), third)


def test_points_from_ask_are_the_callers_to_keep(method):
    """The optimizer reuses a points buffer internally; what ask() returned must not change."""
    opt = make(method)
    kept, copies = [], []
    for _ in range(4):
        points = opt.ask()
        kept.append(points)
        copies.append(points.copy())
        opt.tell(points, [shifted_quadratic(p) for p in points])
    for points, copy_ in zip(kept, copies):
        np.testing.assert_array_equal(points, copy_)
    assert not np.array_equal(kept[0], kept[1])


def test_asking_twice_does_not_change_the_run(method):
    plain = drive(make(method))
    repeated = make(method)
    while repeated.status is None:
        repeated.ask()
        points = repeated.ask()
        repeated.tell(points, [shifted_quadratic(p) for p in points])
    assert_same_run(repeated.result(), plain.result())


def test_tell_without_ask(method):
    opt = make(method)
    with pytest.raises(OptimizerStateError, match="without a pending ask"):
        opt.tell(np.zeros((5, D)), np.zeros(5))
    points = opt.ask()
    opt.tell(points, [shifted_quadratic(p) for p in points])
    with pytest.raises(OptimizerStateError, match="without a pending ask"):
        opt.tell(points, [shifted_quadratic(p) for p in points])


@pytest.mark.parametrize("change", ["value", "order", "fewer"])
def test_tell_with_other_points(method, change):
    opt = make(method)
    points = opt.ask()
    if change == "value":
        other = points.copy()
        other[2, 1] += 1e-12
    elif change == "order":
        other = points[::-1]
    else:
        other = points[:-1]
    with pytest.raises(OptimizerStateError, match="differ from those of the last ask"):
        opt.tell(other, [shifted_quadratic(p) for p in other])
    # the pending ask is still there and can be answered properly
    opt.tell(points, [shifted_quadratic(p) for p in points])
    assert opt.nit == 1


def test_tell_with_the_wrong_number_of_values(method):
    opt = make(method)
    points = opt.ask()
    with pytest.raises(zominimize.ObjectiveValueError, match="5 real numbers"):
        opt.tell(points, [1.0, 2.0])
    with pytest.raises(zominimize.ObjectiveValueError, match="5 real numbers"):
        opt.tell(points, ["a"] * 5)
    opt.tell(points, [shifted_quadratic(p) for p in points])
    assert opt.nit == 1


def test_ask_after_stop(method):
    opt = drive(make(method, maxiter=2))
    assert opt.status == zominimize.Status.MAXITER
    with pytest.raises(OptimizerStateError, match="stopped"):
        opt.ask()


def test_unknown_option_is_a_type_error(method):
    with pytest.raises(TypeError, match="unknown option.*workers"):
        ZOOptimizer(method, np.zeros(D), workers=2)


def test_x0_is_required():
    with pytest.raises(ValueError, match="x0 is required"):
        ZOOptimizer("zo-sgd")


# ---------------------------------------------------------------- checkpoints


def resume(method, state, record=None):
    opt = make(method)
    opt.load_state_dict(pickle.loads(pickle.dumps(state)))
    return drive(opt, record=record)


@pytest.mark.parametrize("estimator", ["forward", "antithetic"])
def test_state_dict_round_trip_resumes_exactly(method, estimator):
    full_points = []
    full = drive(make(method, estimator=estimator), record=full_points)

    half = drive(make(method, estimator=estimator), 20)
    state = half.state_dict()
    rest_points = []
    opt = make(method, estimator=estimator)
    opt.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert opt.nit == 20 and opt.nfev == half.nfev
    drive(opt, record=rest_points)

    assert_same_run(opt.result(), full.result())
    assert len(rest_points) == 20
    for a, b in zip(rest_points, full_points[20:]):
        np.testing.assert_array_equal(a, b)
    # taking the checkpoint did not disturb the original either
    drive(half)
    assert_same_run(half.result(), full.result())


def test_checkpoint_between_ask_and_tell(method):
    full = drive(make(method))
    opt = drive(make(method), 20)
    pending = opt.ask()
    state = opt.state_dict()
    resumed = make(method)
    resumed.load_state_dict(pickle.loads(pickle.dumps(state)))
    np.testing.assert_array_equal(resumed.ask(), pending)  # the same points again
    drive(resumed)
    assert_same_run(resumed.result(), full.result())
    # the original can still answer its own pending ask
    opt.tell(pending, [shifted_quadratic(p) for p in pending])
    drive(opt)
    assert_same_run(opt.result(), full.result())


def test_state_dict_is_plain_data_and_a_copy(method):
    opt = drive(make(method), 3)
    state = opt.state_dict()
    pickle.dumps(state)
    state["x"][:] = 1e9
    state["settings"]["q"] = 99
    assert np.all(opt.x != 1e9) and opt.settings["q"] == 4


def test_state_dict_of_a_finished_run_restores_the_status(method):
    opt = drive(make(method, maxiter=3))
    other = make(method, maxiter=3)
    other.load_state_dict(opt.state_dict())
    assert other.status == opt.status
    assert_same_run(other.result(), opt.result())
    with pytest.raises(OptimizerStateError):
        other.ask()


RESUME_SCRIPT = textwrap.dedent("""
    import pickle, sys, warnings
    import numpy as np
    sys.path.insert(0, {tests!r})
    warnings.simplefilter("ignore")
    from objectives import shifted_quadratic
    from zominimize import ZOOptimizer
    with open({path!r}, "rb") as f:
        job = pickle.load(f)
    opt = ZOOptimizer(job["method"], job["x0"], **job["options"])
    opt.load_state_dict(job["state"])
    while opt.status is None:
        points = opt.ask()
        opt.tell(points, [shifted_quadratic(p) for p in points])
    res = opt.result()
    with open({path!r}, "wb") as f:
        pickle.dump(dict(res), f)
""")


@pytest.mark.parametrize("pending", [False, True], ids=["after-tell", "between-ask-and-tell"])
def test_resume_in_a_new_process(method, tmp_path, pending):
    full = drive(make(method))
    opt = drive(make(method), 20)
    if pending:
        opt.ask()
    job = {"method": method, "x0": np.full(D, 0.2), "options": OPTIONS,
           "state": opt.state_dict()}
    path = tmp_path / "checkpoint.pkl"
    path.write_bytes(pickle.dumps(job))
    script = RESUME_SCRIPT.format(tests=str(TESTS_DIR), path=str(path))
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    res = pickle.loads(path.read_bytes())
    expected = full.result()
    np.testing.assert_array_equal(res["x"], expected.x)
    np.testing.assert_array_equal(res["x_last"], expected.x_last)
    assert (res["fun"], res["nfev"], res["nit"], res["status"]) == \
        (expected.fun, expected.nfev, expected.nit, expected.status)


def test_load_state_with_other_settings(method):
    state = drive(make(method), 3).state_dict()
    with pytest.raises(OptimizerStateError, match=r"other settings: .*q=4 \(here 6\)"):
        make(method, q=6).load_state_dict(state)
    with pytest.raises(OptimizerStateError, match="other settings: .*d="):
        make(method, x0=np.zeros(D + 1)).load_state_dict(state)
    with pytest.raises(OptimizerStateError, match="mu"):
        make(method, mu=1e-2).load_state_dict(state)


def test_load_state_of_another_method(method):
    other = "zo-sgd" if method != "zo-sgd" else "zo-signsgd"
    state = drive(make(other), 3).state_dict()
    with pytest.raises(OptimizerStateError, match=f"state is for method '{other}'"):
        make(method).load_state_dict(state)


@pytest.mark.parametrize("bad_state", [None, {}, {"format_version": 999}, [1, 2]])
def test_load_state_that_is_not_a_state(method, bad_state):
    with pytest.raises(OptimizerStateError, match="format_version"):
        make(method).load_state_dict(bad_state)


# ---------------------------------------------------------------- seeds


def test_seed_generator_is_not_advanced_and_reproduces(method):
    rng = np.random.default_rng(42)
    before = copy.deepcopy(rng.bit_generator.state)
    a = zominimize.minimize(shifted_quadratic, np.zeros(D), method=method,
                            options={"seed": rng, "maxiter": 20, "q": 4})
    assert rng.bit_generator.state == before
    b = zominimize.minimize(shifted_quadratic, np.zeros(D), method=method,
                            options={"seed": np.random.default_rng(42), "maxiter": 20, "q": 4})
    assert_same_run(a, b)
    again = zominimize.minimize(shifted_quadratic, np.zeros(D), method=method,
                                options={"seed": rng, "maxiter": 20, "q": 4})
    assert_same_run(a, again)
    assert rng.bit_generator.state == before


def test_seed_generator_in_ask_tell_is_not_advanced(method):
    rng = np.random.default_rng(7)
    before = copy.deepcopy(rng.bit_generator.state)
    drive(ZOOptimizer(method, np.zeros(D), seed=rng, q=4, maxiter=5))
    assert rng.bit_generator.state == before


def test_same_int_seed_same_run_other_seed_other_run(method):
    a = zominimize.minimize(shifted_quadratic, np.zeros(D), method=method,
                            options={"seed": 3, "maxiter": 20})
    b = zominimize.minimize(shifted_quadratic, np.zeros(D), method=method,
                            options={"seed": 3, "maxiter": 20})
    c = zominimize.minimize(shifted_quadratic, np.zeros(D), method=method,
                            options={"seed": 4, "maxiter": 20})
    assert_same_run(a, b)
    assert not np.array_equal(a.x, c.x)  # the best point is a random query: it differs


def test_no_seed_runs_differ(method):
    a = zominimize.minimize(shifted_quadratic, np.zeros(D), method=method,
                            options={"maxiter": 5})
    b = zominimize.minimize(shifted_quadratic, np.zeros(D), method=method,
                            options={"maxiter": 5})
    assert not np.array_equal(a.x, b.x)  # sign steps may coincide; the queries do not
