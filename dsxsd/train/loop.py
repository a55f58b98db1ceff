"""A training loop for multi-worker runs, in place of ``model.fit``.

Keras 3's ``fit`` cannot train under ``tf.distribute.MultiWorkerMirroredStrategy`` yet
(keras-team/keras#20585: its symbolic build reduces a nested batch, and it reduces
per-replica scalar metrics along an axis they lack). This loop is the documented
``strategy.run`` pattern; it drives the same Keras callbacks with the same logs as
``fit`` (loss, accuracy, val_loss, val_accuracy), so the run folder is written the same.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf


def train_loop(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset,
    *,
    epochs: int,
    initial_epoch: int = 0,
    steps_per_epoch: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 2,
) -> None:
    """Train ``model`` (compiled, created under ``strategy``) for ``epochs`` epochs.

    ``train_ds``/``val_ds`` yield ``((left, right), label)`` batches of the global batch
    size; each worker sees its share (the datasets' auto-shard policy). Workers may end
    an epoch with different numbers of batches: the distributed iterator pads the short
    ones with empty batches, and the loss is averaged over the examples present, so a
    partial batch weighs what it holds.
    """
    optimizer = model.optimizer
    if not optimizer.built:  # fit builds it as it compiles
        with strategy.scope():
            optimizer.build(model.trainable_variables)
    dist_train = strategy.experimental_distribute_dataset(train_ds)
    dist_val = strategy.experimental_distribute_dataset(val_ds)

    def sums(labels, probabilities):
        labels = tf.reshape(tf.cast(labels, tf.float32), [-1, 1])
        probabilities = tf.cast(probabilities, tf.float32)
        per_example = keras.losses.binary_crossentropy(labels, probabilities)
        correct = tf.cast(tf.equal(probabilities > 0.5, labels > 0.5), tf.float32)
        return tf.reduce_sum(per_example), tf.reduce_sum(correct), tf.cast(tf.shape(labels)[0], tf.float32)

    def train_replica(batch):
        (left, right), labels = batch
        with tf.GradientTape() as tape:
            probabilities = model([left, right], training=True)
            loss_sum, correct, count = sums(labels, probabilities)
            total = tf.distribute.get_replica_context().all_reduce("sum", count)
            loss = loss_sum / tf.maximum(total, 1.0)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        # The optimizer sums gradients across replicas: each holds its share of the mean.
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss_sum, correct, count

    def test_replica(batch):
        (left, right), labels = batch
        return sums(labels, model([left, right], training=False))

    def reduced(step):
        @tf.function
        def run(batch):
            per_replica = strategy.run(step, args=(batch,))
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

        return run

    train_step, test_step = reduced(train_replica), reduced(test_replica)
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=verbose != 0, model=model,
        verbose=verbose, epochs=epochs, steps=steps_per_epoch,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    train_iterator = iter(dist_train) if steps_per_epoch else None
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        totals = [0.0, 0.0, 0.0]
        batches = (next(train_iterator) for _ in range(steps_per_epoch)) if train_iterator else dist_train
        for step, batch in enumerate(batches):
            callback_list.on_train_batch_begin(step)
            totals = [t + float(v) for t, v in zip(totals, train_step(batch))]
            callback_list.on_train_batch_end(step, _logs(totals))
        logs = _logs(totals)
        val_totals = [0.0, 0.0, 0.0]
        for batch in dist_val:
            val_totals = [t + float(v) for t, v in zip(val_totals, test_step(batch))]
        logs.update({f"val_{k}": v for k, v in _logs(val_totals).items()})
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()


def _logs(totals: list[float]) -> dict[str, float]:
    loss_sum, correct, count = totals
    count = max(count, 1.0)
    return {"loss": loss_sum / count, "accuracy": correct / count}


__all__ = ["train_loop"]
