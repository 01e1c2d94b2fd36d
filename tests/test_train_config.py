"""``TrainConfig.validate``: the settings checks the wizard's Setup page used to
make itself live in the core, so xray-train and the wizard refuse the same
settings with the same words.  The checks of a new run's files and split
(``make_config``) are left out when a saved run is validated again (resume)."""

from __future__ import annotations

import pytest

from training.common.errors import DataError
from training.train.config import TrainConfig, make_config


def config(tmp_path, **kw):
    return make_config([str(tmp_path / "nowhere")], str(tmp_path / "run"), "paper", **kw)


def test_no_model_and_no_run_folder_are_refused(tmp_path):
    with pytest.raises(DataError, match="Choose at least one model to train"):
        config(tmp_path, models=[])
    with pytest.raises(DataError, match="Unknown model"):
        config(tmp_path, models=["vgg"])
    with pytest.raises(DataError, match="Choose a run folder"):
        make_config([str(tmp_path)], "", "paper")


def test_split_percentages_must_add_up_unless_a_split_file_is_used(tmp_path):
    assert config(tmp_path, split=(0.8, 0.1, 0.1)).split == (0.8, 0.1, 0.1)
    assert config(tmp_path, split=(0.7, 0.15, 0.15)).split == (0.7, 0.15, 0.15)
    with pytest.raises(DataError, match="must add up to 100 %"):
        config(tmp_path, split=(0.8, 0.1, 0.2))
    split = tmp_path / "split.csv"
    split.write_text("dataset,file,label,split\n")
    assert config(tmp_path, split=(0.8, 0.1, 0.2), split_file=str(split)).split_file == str(split)


def test_files_named_must_exist_for_a_new_run(tmp_path):
    with pytest.raises(DataError, match="Weights file not found"):
        config(tmp_path, init=str(tmp_path / "missing.pth"))
    with pytest.raises(DataError, match="Split file not found"):
        config(tmp_path, split_file=str(tmp_path / "missing.csv"))
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    assert config(tmp_path, init=str(weights)).init == str(weights)
    for init in ("scratch", "imagenet"):
        assert config(tmp_path, init=init).init == init


def test_a_saved_run_is_validated_without_its_files(tmp_path):
    """A resumed run may no longer need its weights file (its models started)."""
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    cfg = config(tmp_path, init=str(weights))
    cfg.save(tmp_path / "config.json")
    weights.unlink()
    again = TrainConfig.load(tmp_path / "config.json")
    again.validate()  # what the trainer does on resume
    with pytest.raises(DataError, match="Weights file not found"):
        again.validate(new_run=True)
