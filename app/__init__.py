"""SORL Lab's Streamlit app: the pages Streamlit runs, and the logic behind them as a package.

Streamlit runs `Home.py` (the toy lab) and `pages/*.py` as scripts; each puts the repository root on the import
path and imports what it needs from here. Everything that needs no Streamlit lives in these modules, so tests call
it directly (the repository root is on pytest's path: pyproject.toml, `pythonpath`).

One module per page:

- `toy_page`: the toy lab (Home.py): URL state, sampling, metrics, CSVs, training in the background.
- `rollouts_page`: OGBench rollouts (pages/1_OGBench_rollouts.py): configurations, episodes, tables, videos.
- `scaling_page`: the scaling study (pages/2_Scaling_study.py): sweeps, the M_inf x N grid, compute-optimal cells.
- `runs_page`: training runs (pages/3_Training_runs.py): run folders, their logs and figures.
- `verifier_page`: the verifier (pages/4_Verifier.py): recorded episodes, counterfactual returns, calibration.

Shared by several pages:

- `policies`: bundled OGBench policies and their cards, loading and checking a checkpoint, its content digest.
- `uploads`: uploaded checkpoints and authors' runs, stored by content digest.
- `paths`: the repository root and the folders a typed path may lie in.
- `notes`: the "what to notice" sentences written from the numbers on screen.
- `messages`: exception messages for people.
- `jobs`: the server's heavy-job board: a queue, a few jobs at once, identical requests computed once.

Clients of a running server (they speak Streamlit's websocket protocol, `streamlit.proto`, and nothing else of it):

- `session_client`: one browser tab without the browser (the classroom harness, benchmarks/classroom.py).
- `warm`: `make app`'s warm-up: every page, and the toy page's whole (world, M_inf, N) grid, once.
"""
