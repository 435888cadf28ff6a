"""A run's pairs with more methods: beside the paper's pairs alone (a figure's columns), or beside the run's."""

from lafam_utils.notebook import setup

SUPERVISED, SIMCLR = "shapes-supervised", "shapes-simclr"


def test_paper_pairs_with_adds_only_the_methods_named_and_pairs_with_adds_them_to_the_runs_methods():
    run = setup({"random_init": True, "methods": ["eigencam", "random"]})
    assert run.paper_pairs_with(["fem"]) == [
        (SUPERVISED, "gradcam"), (SUPERVISED, "lafam"), (SUPERVISED, "fem"),
        (SIMCLR, "relax"), (SIMCLR, "lafam"), (SIMCLR, "fem"),
    ]
    assert run.pairs == run.paper_pairs_with(["eigencam", "random"])
    assert run.pairs_with(["fem", "random"]) == [
        (SUPERVISED, "gradcam"), (SUPERVISED, "lafam"), (SUPERVISED, "eigencam"), (SUPERVISED, "random"),
        (SUPERVISED, "fem"),
        (SIMCLR, "relax"), (SIMCLR, "lafam"), (SIMCLR, "eigencam"), (SIMCLR, "random"), (SIMCLR, "fem"),
    ]
