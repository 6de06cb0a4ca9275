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
