"""What the shipped subspace QueryRNN reads and does, per quarter of a run (issue 18, goal 3).

Runs the shipped l2l-zo with defaults on two LeNet5 attack images and nclsq d = 100 and
1,000 (instance 0, the goal suites' budgets) and prints, per quarter of the run, the mean
of the QueryRNN's first two inputs (r, the share of |g|^2 in the iteration's subspace, and
the cosine between g and the running mean) and the fraction of split iterations. Run from
the repository root::

    PYTHONPATH=. python research/subspace_features_probe.py
"""
import numpy as np, zominimize, warnings
from zominimize.learned import queries
from benchmarks.problems import build
rec = []
orig = queries.subspace_features
def spy(g, state):
    f = orig(g, state); rec.append(f.squeeze(-1).numpy().copy()); return f
queries.subspace_features = spy
for spec in [{"family":"attack","image":0,"source":"foolbox"}, {"family":"attack","image":3,"source":"foolbox"},
             {"family":"nclsq","d":100,"instance":0}, {"family":"nclsq","d":1000,"instance":0}]:
    rec.clear()
    p = build(spec)
    budget = 4200 if spec.get("d",0) != 1000 else 21000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = zominimize.minimize(p.fun, p.x0, method="l2l-zo", options={"seed":0, "maxfev":budget, "maxiter":budget})
    a = np.array(rec)
    n = len(a)
    qs = [slice(0, n//4), slice(n//4, n//2), slice(n//2, 3*n//4), slice(3*n//4, n)]
    print(spec, "final %.3g" % r.fun, "share r by quarter:", " ".join("%.3f" % ((a[s,0].mean()+1)/2) for s in qs),
          "cos:", " ".join("%.3f" % a[s,1].mean() for s in qs), "split frac:", " ".join("%.2f" % ((a[s,2]>0).mean()) for s in qs))
