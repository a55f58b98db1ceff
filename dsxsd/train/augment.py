"""Augmentation of training images: ``--augment basic`` and ``--augment crops``.

Both take a batch of float32 [B, S, S, 3] images in 0-255 and a seed, and return the batch
changed image by image, every random draw a stateless function of the seed
(``tf.random.stateless_*``): the pipeline keys the seed by the run's seed, the pass over
the pairs and the batch, so a resumed run augments exactly as an uninterrupted one.

- ``basic`` (the ``--augment`` of earlier versions): horizontal flip, brightness, contrast.
- ``crops``, for object crops (torchvision's ``RandomResizedCrop``, ``RandomRotation`` and
  ``ColorJitter``, Keras' ``RandomZoom``/``RandomRotation``/``RandomContrast``): a random
  part of the image (area and aspect ratio jittered) scaled back to the full size, a small
  rotation, then brightness, contrast and saturation. No flips unless asked for: a
  mirrored digit or word is another object.

The crop, the rotation and the flip are one affine map per image, applied by one
resampling (bilinear; what falls outside the image is mirrored in), so an image is
interpolated once, not once per operation.
"""

from __future__ import annotations

import math

import tensorflow as tf

from .._preflight import AUGMENT_FLIPS as FLIPS
from .._preflight import AUGMENTATIONS

# basic: brightness shift as a fraction of 255, contrast factor range.
BRIGHTNESS_DELTA = 0.2
CONTRAST_RANGE = (0.8, 1.2)
# crops: the part of the image kept (a fraction of its area) and that part's aspect ratio.
CROP_AREA = (0.6, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
# Rotation of at most this many degrees either way: the pose of a photographed object
# varies a little, and a larger turn exposes more of the mirrored border.
ROTATION_DEGREES = 10.0
SATURATION_RANGE = (0.8, 1.2)


def augment_batch(images: tf.Tensor, seed: tf.Tensor, policy: str = "basic", flips: bool | None = None) -> tf.Tensor:
    """``images`` (float32 [B, S, S, 3], 0-255) augmented by ``policy`` (``none``,
    ``basic`` or ``crops``), drawn per image from ``seed`` (int [2]). ``flips``: random
    horizontal flips, ``None`` the policy's default (:data:`FLIPS`)."""
    if policy not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {policy!r}; expected one of {', '.join(AUGMENTATIONS)}")
    flips = FLIPS[policy] if flips is None else bool(flips)
    seed = tf.cast(seed, tf.int64)
    if policy == "basic":
        return basic(images, seed, flips)
    if policy == "crops":
        return crops(images, seed, flips)
    return _flip(images, seed) if flips else images


def augment_uint8(images: tf.Tensor, seed: tf.Tensor, policy: str = "basic", flips: bool | None = None) -> tf.Tensor:
    """:func:`augment_batch` of uint8 images, rounded back to uint8."""
    augmented = augment_batch(tf.cast(images, tf.float32), seed, policy, flips)
    return tf.cast(tf.round(augmented), tf.uint8)


def basic(images: tf.Tensor, seed: tf.Tensor, flips: bool = True) -> tf.Tensor:
    """Random horizontal flip (when ``flips``), brightness and contrast."""
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    if flips:
        images = _flip(images, seeds[0])
    return _brightness_contrast(images, seeds[1], seeds[2])


def crops(
    images: tf.Tensor, seed: tf.Tensor, flips: bool = False, *, area=CROP_AREA, ratio=CROP_RATIO,
    rotation: float = ROTATION_DEGREES, brightness: float = BRIGHTNESS_DELTA, contrast=CONTRAST_RANGE,
    saturation=SATURATION_RANGE,
) -> tf.Tensor:
    """A random resized crop (``area``: the fraction of the image kept; ``ratio``: its
    aspect ratio), a rotation of up to ``rotation`` degrees (and a horizontal flip when
    ``flips``), then brightness (a shift of up to ``brightness`` x 255), contrast and
    saturation (factor ranges)."""
    n = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1:3], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, num=8)

    def uniform(i, low, high):
        return tf.random.stateless_uniform([n], seeds[i], low, high)

    area = uniform(0, *area)
    ratio = tf.exp(uniform(1, math.log(ratio[0]), math.log(ratio[1])))
    # The kept part's sides, as fractions of the image's (at most the whole side).
    sx = tf.minimum(tf.sqrt(area * ratio), 1.0)
    sy = tf.minimum(tf.sqrt(area / ratio), 1.0)
    # Its centre, anywhere that keeps it inside the image.
    tx = uniform(2, -0.5, 0.5) * (1.0 - sx) * size[1]
    ty = uniform(3, -0.5, 0.5) * (1.0 - sy) * size[0]
    angle = uniform(4, -rotation, rotation) * (math.pi / 180.0)
    if flips:
        sx = tf.where(uniform(5, 0.0, 1.0) < 0.5, -sx, sx)
    # Output pixel p maps to input pixel R(angle) diag(sx, sy) (p - c) + c + t.
    cos, sin = tf.cos(angle), tf.sin(angle)
    m00, m01, m10, m11 = cos * sx, -sin * sy, sin * sx, cos * sy
    cx, cy = (size[1] - 1.0) / 2.0, (size[0] - 1.0) / 2.0
    zeros = tf.zeros_like(sx)
    transforms = tf.stack([
        m00, m01, cx + tx - m00 * cx - m01 * cy,
        m10, m11, cy + ty - m10 * cx - m11 * cy,
        zeros, zeros,
    ], axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT",
    )
    images = _brightness_contrast(images, seeds[6], seeds[7], brightness, contrast)
    factor = tf.random.stateless_uniform([n, 1, 1, 1], tf.random.experimental.stateless_fold_in(seeds[7], 1),
                                         *saturation)
    grey = tf.reduce_mean(images, axis=3, keepdims=True)
    return tf.clip_by_value(grey + (images - grey) * factor, 0.0, 255.0)


def _flip(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    flip = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], seed) < 0.5
    return tf.where(flip, tf.reverse(images, axis=[2]), images)


def _brightness_contrast(
    images: tf.Tensor, brightness_seed: tf.Tensor, contrast_seed: tf.Tensor, brightness: float = BRIGHTNESS_DELTA,
    contrast=CONTRAST_RANGE,
) -> tf.Tensor:
    n = tf.shape(images)[0]
    delta = tf.random.stateless_uniform([n, 1, 1, 1], brightness_seed, -brightness, brightness) * 255.0
    factor = tf.random.stateless_uniform([n, 1, 1, 1], contrast_seed, *contrast)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value((images - mean) * factor + mean + delta, 0.0, 255.0)


__all__ = ["AUGMENTATIONS", "FLIPS", "augment_batch", "augment_uint8", "basic", "crops"]
