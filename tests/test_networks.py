import numpy as np
import pytest
import tensorflow_probability as tfp

from tfvae import networks

tfd = tfp.distributions


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("image_shape", [(28, 28, 1), (5, 7, 3), (9, 4, 2)])
def test_encoder_and_decoder_shapes(architecture, image_shape):
    make_encoder, make_decoder, _ = networks.networks_for(architecture)
    encoder, decoder = make_encoder(image_shape, 2), make_decoder(image_shape, 2)
    x = np.random.default_rng(0).random((3, *image_shape)).astype(np.float32)
    posterior = encoder(x)
    assert isinstance(posterior, tfd.MultivariateNormalDiag)
    assert posterior.batch_shape == (3,) and posterior.event_shape == (2,)
    assert np.all(posterior.stddev().numpy() > 0)
    z = posterior.sample(4, seed=(1, 2))  # (4, 3, 2): a leading sample dimension
    likelihood = decoder(z)
    assert isinstance(likelihood, tfd.Independent)
    assert isinstance(likelihood.distribution, tfd.Bernoulli)
    assert likelihood.batch_shape == (4, 3) and likelihood.event_shape == image_shape
    assert likelihood.log_prob(x).shape == (4, 3)


def test_gaussian_decoder_with_learned_scale():
    decoder = networks.mlp_decoder((4, 5, 3), 2, likelihood="gaussian", scale="learned")
    likelihood = decoder(np.zeros((6, 2), np.float32))
    assert isinstance(likelihood.distribution, tfd.Normal)
    assert "raw_scale" in [w.name for w in decoder.trainable_weights]


@pytest.mark.parametrize("latent_dim", [0, -3, 2.5, None])
def test_bad_latent_dim(latent_dim):
    with pytest.raises(ValueError, match="Expected latent_dim to be an integer >= 1"):
        networks.mlp_encoder((28, 28, 1), latent_dim)


@pytest.mark.parametrize("image_shape", [(28, 28), (28, 28, 0), "28x28", (28.0, 28, 1)])
def test_bad_image_shape(image_shape):
    with pytest.raises(ValueError, match=r"Expected an image shape \(height, width, channels\)"):
        networks.conv_decoder(image_shape, 2)


def test_unknown_architecture_lists_choices():
    with pytest.raises(ValueError, match=r"Unknown architecture 'resnet'.*mlp.*conv"):
        networks.networks_for("resnet")


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_dense_layers_start_uniform_within_one_over_root_fan_in(architecture):
    """Every Dense kernel of the encoder, decoder and classifier is U(±1/√fan_in): inside the bound, with the
    uniform's standard deviation 1/√(3·fan_in), and biases at zero."""
    import keras

    encoder, decoder, classifier = networks.networks_for(architecture)
    parts = [encoder((28, 28, 1), 20), decoder((28, 28, 1), 20), classifier((28, 28, 1), 10)]
    dense = [layer for part in parts for layer in part._flatten_layers() if isinstance(layer, keras.layers.Dense)]
    assert len(dense) == {"mlp": 6, "conv": 5}[architecture]  # hidden layers and heads
    for layer in dense:
        kernel, bias = np.asarray(layer.kernel), np.asarray(layer.bias)
        bound = kernel.shape[0] ** -0.5
        assert np.abs(kernel).max() <= bound
        if kernel.size >= 5000:  # enough draws for the standard deviation to within 3%
            np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.03)
        np.testing.assert_array_equal(bias, 0.0)


def _dense_units(network):
    import keras

    return [layer.units for layer in network.body.layers if isinstance(layer, keras.layers.Dense)]


def test_for_images_sizes_every_network_of_the_mlp_with_hidden_units():
    """`hidden_units` reaches the encoder, decoder (and M2's classifier) of `for_images`, the model kinds that
    build on it included, and survives a `.keras` round trip."""
    import keras

    import tfvae

    vae = tfvae.VAE.for_images((4, 5, 1), latent_dim=3, hidden_units=(16, 8))
    assert _dense_units(vae.encoder) == [16, 8] and _dense_units(vae.decoder) == [16, 8, 20]
    conditional = tfvae.ConditionalVAE.for_images((4, 5, 1), num_classes=3, latent_dim=2, hidden_units=(7,))
    assert _dense_units(conditional.encoder)[0] == 7 and _dense_units(conditional.decoder)[0] == 7
    m2 = tfvae.SemiSupervisedVAE.for_images((4, 5, 1), num_classes=3, latent_dim=2, hidden_units=(9, 5))
    assert [_dense_units(part)[:2] for part in (m2.encoder, m2.decoder, m2.classifier)] == [[9, 5]] * 3
    assert _dense_units(tfvae.VAE.for_images((4, 5, 1), latent_dim=3).encoder) == [400]  # the default

    x = (np.random.default_rng(0).random((2, 4, 5, 1)) < 0.5).astype(np.float32)
    restored = keras.models.model_from_json(vae.to_json())
    assert _dense_units(restored.encoder) == [16, 8]
    restored.set_weights(vae.get_weights())
    np.testing.assert_allclose(restored.encode(x).mean(), vae.encode(x).mean(), rtol=1e-6)


@pytest.mark.parametrize("options, message", [
    ({"architecture": "conv", "hidden_units": (64,)}, r"hidden_units sizes the MLP's dense layers; architecture='conv'"),
    ({"hidden_units": (64, 0)}, r"Expected hidden_units to be positive ints"),
])
def test_for_images_refuses_hidden_units_it_cannot_use(options, message):
    import tfvae

    with pytest.raises(ValueError, match=message):
        tfvae.VAE.for_images((28, 28, 1), latent_dim=2, **options)
