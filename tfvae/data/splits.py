"""TFDS split syntax ("train", "test[:8000]", "train[:90%]+test") for any source of arrays."""

import types

import tensorflow_datasets as tfds


class SplitError(ValueError):
    """A split string that cannot be read, or that asks for examples a source does not have."""


def resolve_split(split, split_sizes):
    """Returns [(split_name, start, stop), ...] for `split` given {split_name: num_examples}.

    Uses TFDS's own parser, so local IDX/npz folders accept exactly the
    syntax that `tfds.load` does.
    """
    infos = {
        name: types.SimpleNamespace(num_examples=size, shard_lengths=[size])
        for name, size in split_sizes.items()
    }
    try:
        instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
    except (ValueError, AssertionError, KeyError) as error:
        raise SplitError(
            f"Cannot read split {split!r}: {' '.join(str(error).split())} Available splits: "
            + ", ".join(f"{name} ({size} examples)" for name, size in split_sizes.items())
            + ". Examples of valid splits: 'train', 'test[:8000]', 'train[:90%]'."
        ) from None
    return [
        (i.splitname, i.from_ or 0, split_sizes[i.splitname] if i.to is None else i.to)
        for i in instructions
    ]
