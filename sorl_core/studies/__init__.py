"""Studies built on the algorithm and the worlds: nothing in sorl_core outside this package imports it.

- evaluate: the test-time-scaling sweep over M_inf x N (and verifiers, adaptive rules) in OGBench: sweep.csv
- sweep_schema: the sweep CSV's columns, shared with the app and the notebooks
- verifier_study: counterfactual returns of best-of-N candidates against every verifier's score
- adaptive: adaptive compute per state (sequential and parallel rules) and the fixed grid's frontier
- toy_scaling: a toy policy's scaling table against the closed-form reward, and the converged-picture checks
- bench: timing of training iterations and sampling
- grid (grid_file, grid_options, grid_cells, grid_backends): `sorl-lab grid`, train and evaluate cells from a TOML
  file on local processes or Ray tasks, resumable
"""
