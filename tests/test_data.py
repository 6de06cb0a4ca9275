"""Data sources, split syntax and the input pipeline, on the real MNIST test set and Fashion-MNIST."""

import gzip

import numpy as np
import pytest
from conftest import FASHION_MNIST_DIR, MNIST_DIR

from tfvae.data import DataUnavailable, SplitError, available_datasets, load_dataset
from tfvae.data.idx import read_idx


def _all(dataset):
    return np.concatenate([batch.numpy() for batch in dataset])


def test_idx_reader_matches_the_raw_bytes():
    with gzip.open(MNIST_DIR / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0].ravel(), np.frombuffer(raw[16 : 16 + 784], np.uint8))
    assert read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")[:5].tolist() == [7, 2, 1, 0, 4]


def test_idx_reader_rejects_truncated_files(tmp_path):
    path = tmp_path / "bad-images-idx3-ubyte"
    with gzip.open(MNIST_DIR / "t10k-images-idx3-ubyte.gz") as f:
        path.write_bytes(f.read()[:1000])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


@pytest.mark.parametrize("split, expected", [("test[:8000]", (0, 8000)), ("test[8000:]", (8000, 10000)), ("test[:10%]", (0, 1000))])
def test_tfds_split_syntax_on_a_local_idx_folder(split, expected, mnist_test_images):
    dataset, info = load_dataset("mnist", split=split, data_dir=MNIST_DIR, binarize=None, shuffle=False, batch_size=1000, return_info=True)
    images = _all(dataset)
    assert info.num_examples == expected[1] - expected[0] and info.image_shape == (28, 28, 1)
    np.testing.assert_allclose(images, mnist_test_images[expected[0] : expected[1]], atol=1e-6)


def test_binarization_dynamic_changes_each_epoch_static_does_not():
    options = {"split": "test[:500]", "data_dir": MNIST_DIR, "shuffle": False, "batch_size": 100}
    dynamic = load_dataset("mnist", **options)
    first, second = _all(dynamic), _all(dynamic)
    assert set(np.unique(first)) == {0.0, 1.0} and not np.array_equal(first, second)
    static = load_dataset("mnist", binarize="static", **options)
    np.testing.assert_array_equal(_all(static), _all(static))
    grey = _all(load_dataset("mnist", binarize=None, **options))
    # Binarized pixels are Bernoulli(intensity): their mean matches the grey level's mean.
    assert abs(first.mean() - grey.mean()) < 0.005


def test_shuffling_reshuffles_and_labels_come_on_request():
    dataset = load_dataset("mnist", split="test[:300]", data_dir=MNIST_DIR, batch_size=300, with_labels=True, binarize=None)
    (images_a, labels_a), (_, labels_b) = next(iter(dataset)), next(iter(dataset))
    assert images_a.shape == (300, 28, 28, 1) and labels_a.shape == (300,)
    assert not np.array_equal(labels_a, labels_b)
    assert sorted(labels_a.numpy()) == sorted(labels_b.numpy())


def test_npz_source(tmp_path, mnist_test_images):
    x = (mnist_test_images[:50, ..., 0] * 255).round().astype(np.uint8)
    np.savez(tmp_path / "data.npz", x_train=x[:40], y_train=np.arange(40), x_test=x[40:])
    dataset, info = load_dataset("mine", split="train[:25%]", data_dir=tmp_path / "data.npz", binarize=None, shuffle=False, return_info=True)
    assert info.num_examples == 10 and "data.npz" in info.source
    np.testing.assert_allclose(_all(dataset)[..., 0], x[:10] / 255.0, atol=1e-6)


def test_fashion_mnist_from_the_debian_copy_without_network():
    dataset, info = load_dataset("fashion_mnist", split="test[:256]", download=False, batch_size=128, return_info=True)
    assert str(FASHION_MNIST_DIR) in info.source and info.num_examples == 256
    assert _all(dataset).shape == (256, 28, 28, 1)
    assert "fashion_mnist" in available_datasets()["local"]


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(DataUnavailable, match=r"Unknown dataset 'mnits'.*fashion_mnist"):
        load_dataset("mnits")


def test_unavailable_offline_says_what_was_tried_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataUnavailable) as error:
        load_dataset("kmnist", download=False)
    message = str(error.value)
    assert "Tried:" in message and "not prepared" in message and "--data-dir" in message


@pytest.mark.parametrize("split", ["tset", "test[:x]", "test[:20000]"])
def test_bad_split_names_the_available_splits(split):
    with pytest.raises(SplitError, match=r"Cannot read split.*test \(10000 examples\)"):
        load_dataset("mnist", split=split, data_dir=MNIST_DIR)


def test_missing_data_dir_and_bad_batch_size():
    with pytest.raises(DataUnavailable, match="does not exist"):
        load_dataset("mnist", data_dir="/no/such/folder")
    with pytest.raises(ValueError, match="Expected batch_size >= 1"):
        load_dataset("mnist", data_dir=MNIST_DIR, batch_size=0)


def test_few_labels_get_a_share_of_every_batch(mnist_test_images):
    from tfvae.data.pipeline import array_pipeline, make_pipeline

    labels = np.full(1000, -1)
    labels[:20] = np.arange(20) % 10
    images = (mnist_test_images[:1000] * 255).astype(np.uint8)
    for dataset in (make_pipeline(images, labels, 100, binarize="dynamic", with_labels=True, seed=3),
                    array_pipeline((images.astype(np.float32) / 255, labels), 100, seed=3)):
        batches = [y.numpy() for _, y in dataset]
        assert [int((y >= 0).sum()) for y in batches] == [10] * 11  # 10% labeled in every batch
        everything = np.concatenate(batches)
        assert (everything == -1).sum() == 980  # one pass over the unlabeled examples per epoch
        assert set(everything[everything >= 0]) == set(range(10))  # the labeled ones cycle
    plenty = np.arange(1000) % 10  # every label known: plain batches
    assert [len(y) for _, y in array_pipeline((images, plenty), 100, seed=3)] == [100] * 10
