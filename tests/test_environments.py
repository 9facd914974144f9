"""The environment registry: one entry per environment holds its SORL settings, its dataset and its recipe."""

import pytest

from sorl_core.ogbench.environments import ENVIRONMENTS, environment_for
from sorl_core.ogbench.datasets import UnsupportedDatasetError, dataset_name_for, dataset_spec

# SORL's published settings (docs/ALGORITHM.md §6): discount, AGG, alpha, default task; puzzle-3x3 is FQL's.
PUBLISHED = {
    "antmaze-large-navigate": (0.99, "min", 500, 1),
    "antmaze-giant-navigate": (0.995, "min", 500, 1),
    "humanoidmaze-medium-navigate": (0.995, "mean", 100, 1),
    "humanoidmaze-large-navigate": (0.995, "mean", 500, 1),
    "antsoccer-arena-navigate": (0.995, "mean", 500, 4),
    "cube-single-play": (0.99, "mean", 10, 2),
    "cube-double-play": (0.99, "mean", 50, 2),
    "scene-play": (0.99, "mean", 100, 2),
    "puzzle-3x3-play": (0.99, "mean", 3, 4),  # SORL publishes none: FQL's, alpha translated (settings_from says how)
}


def test_every_entry_holds_the_published_settings():
    assert {name: (e.discount, e.q_agg, e.q_loss_coef, e.default_task) for name, e in ENVIRONMENTS.items()} == PUBLISHED


@pytest.mark.parametrize("name", list(ENVIRONMENTS))
def test_each_entry_names_its_dataset_and_how_it_is_made(name):
    env = ENVIRONMENTS[name]
    assert dataset_name_for(env.task()) == env.dataset and environment_for(env.task(3)) is env
    if env.dataset_source == "oracles":  # the official recipe regenerates it: 1000 episodes x 1001 rows
        recipe = env.recipe()
        assert recipe is dataset_spec(env.dataset) and (recipe.episodes, recipe.episode_length) == (1000, 1001)
    else:  # official files only: the lab says where to put them
        assert env.recipe() is None
        with pytest.raises(UnsupportedDatasetError, match="Download the official files"):
            dataset_spec(env.dataset)


def test_an_unknown_environment_names_the_supported_ones():
    with pytest.raises(ValueError, match="no SORL preset for 'nope-v0'; supported environments: antmaze-giant"):
        environment_for("nope-v0")
