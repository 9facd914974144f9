"""The OGBench room: environments (SORL's settings per environment), datasets (names, recipes, paths, loading),
generation (regenerating datasets with OGBench's oracles), rollouts (batched environments, episodes, exact state
restores), rendering (videos) and training on OGBench. The toy worlds live in sorl_core/toy.py."""
