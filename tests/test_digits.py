"""The embedded default data: scikit-learn's digits, one split shared by the dataset and its classifier."""

from __future__ import annotations

import pytest
import torch

import scorekit
from scorekit.cli.evaluate import DEFAULT_EXTRACTOR, extractor_for
from scorekit.digits import digits, load_digits, split_indices
from scorekit.errors import DataError
from scorekit.metrics import digits_split


def test_splits_are_real_disjoint_and_fixed():
    train, test = digits(), digits(train=False)
    assert (len(train), len(test)) == (1438, 359)
    assert train[0].shape == (1, 8, 8) and train.images.min() == 0 and train.images.max() == 1
    tr, te = split_indices(1797)
    assert set(tr.tolist()).isdisjoint(te.tolist()) and len(set(tr.tolist()) | set(te.tolist())) == 1797
    assert torch.equal(digits(train=False).images, test.images)  # the same split every time
    images, _ = load_digits()
    assert torch.equal(test.images, images[te])


def test_the_classifier_is_trained_on_the_datasets_train_split():
    split = digits_split()
    assert torch.equal(split.train_images, digits().images)
    assert torch.equal(split.test_images, digits(train=False).images)


def test_a_data_root_is_an_error_not_silently_ignored(tmp_path):
    with pytest.raises(DataError, match=r"dataset 'digits' is bundled with scikit-learn.*drop --data"):
        digits(root=tmp_path / "no-such-dir")


def test_registered_by_scorekit_itself():
    host = scorekit.PluginHost(autoload=False)
    component = host.get("dataset", "digits")
    assert component.factory is digits and component.owner == "scorekit"


def test_the_dataset_names_its_feature_extractor():
    assert extractor_for(digits()) == "scorekit-digits"
    assert extractor_for(torch.utils.data.TensorDataset(torch.zeros(2, 1, 8, 8))) == DEFAULT_EXTRACTOR
