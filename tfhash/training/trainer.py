r"""The training loop of every run, on one device or on a ``tf.distribute`` strategy.

Keras 3's ``model.fit`` does not run under ``MultiWorkerMirroredStrategy`` (keras-team/keras
#20585, tensorflow/tensorflow#72388), so :mod:`tfhash.train` trains with :func:`fit` here, the
same loop for ``--strategy=default``, ``mirrored`` and ``multi_worker``::

    for each epoch:                                     callbacks.on_epoch_begin
      for each step:                                    callbacks.on_train_batch_begin
        strategy.run(replica_step, next(global batch))  (one slice of it per replica)
        running means of the loss and of each term      callbacks.on_train_batch_end(logs)
      logs = the epoch's means                          callbacks.on_epoch_end(logs)

What it keeps of ``fit``: the callbacks, driven through ``keras.callbacks.CallbackList`` with
the same ``params`` (``epochs``, ``steps``, ``verbose``) and the same logs (the running mean of
``"loss"`` and of each term the loss reports, e.g. ``"semantic"``), so
:mod:`tfhash.training.callbacks`, TensorBoard and the History see what ``fit`` gave them; the progress
bar (``verbose=1``) or one line per epoch (``verbose=2``); ``initial_epoch`` for a resumed run;
``model.stop_training``; the optimizer's own loss scaling (a ``LossScaleOptimizer`` under
``mixed_float16``); and XLA where the compiled model asks for it on one replica.

One replica step, on its slice of the global batch:

1. ``h = model(x)`` on the slice;
2. the codes and labels of every replica are gathered (``ReplicaContext.all_gather``, in replica
   order, so the rows are the global batch as the pipeline made it): the loss mines its
   pairs and tuples in the **whole global batch**. LSDH's objective (Eq. 15) is a mean over the
   quadruplets of a batch, and a batch is built class by class (``tfhash.data.train_dataset``);
   the strategy cuts it into contiguous slices, so a replica's slice alone holds a few classes,
   or one, and its quadruplets would be another objective (none at all with one class: the
   ranking loss was 0 on every replica). Gathered, every replica computes the loss of the
   global batch (a few ms next to the network), the objective of one device;
3. the total (:meth:`tfhash.models.HashingModel.loss_terms`: the loss, the layers'
   regularisers) is divided by the number of replicas: the optimizer sums the replicas'
   gradients, and the gradient of ``all_gather`` sums the replicas' upstream gradients, so the
   step's gradient is the global batch's, whatever the number of replicas;
4. ``optimizer.apply`` in replica context (it sums across replicas and updates every copy).

With more than one replica, batch normalisation uses the statistics of the global batch
(``synchronized``, an all-reduce per layer) rather than of each slice: with both this and 2., a
step on R replicas moves the weights as a step on one device does, to float rounding
(``tests/integration/test_distribute.py`` checks it on a small network with batch
normalisation, to 1e-4 of the step). Under
``mixed_float16``, Keras's ``LossScaleOptimizer`` decides whether a step overflowed from a
replica's gradients before they are summed, so 1 and R replicas may skip a different number of
the first steps. Random mining draws the same tuples on every replica: create the loss under
``strategy.scope()``, so its seed state is mirrored, as the model and the optimizer must be.

Which process writes what is the caller's choice (in a run, the chief:
:func:`tfhash.config.multi_worker_chief`); every worker runs the same steps, which are collective.
"""

import keras
import tensorflow as tf

from tfhash.errors import UsageError


def make_strategy(name):
    """The ``tf.distribute`` strategy of ``--strategy=name``: ``default`` (no distribution, one
    device), ``mirrored`` (every local GPU, or the logical devices configured), ``multi_worker``
    (the workers of ``TF_CONFIG``, each with its local devices; :func:`tfhash.config.
    multi_worker_chief` checks it and says which worker writes).

    Create it before TensorFlow runs any op (``multi_worker`` configures the collectives).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UsageError(f"unknown strategy {name!r}: choose default, mirrored or multi_worker")


class _RunningMeans:
    """The mean of each logged value over the steps of an epoch, as ``fit``'s metrics are."""

    def __init__(self):
        self.sums, self.count = {}, 0

    def update(self, values):
        self.count += 1
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
        return {name: total / self.count for name, total in self.sums.items()}


def _synchronize_batch_norm(model):
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def _placed(value, strategy):
    """``value`` on a device: a collective needs one, and a multi-worker strategy with one
    device per worker runs the replica function without a device scope."""
    if value.device:
        return value
    with tf.device(strategy.extended.worker_devices[0]):
        return tf.identity(value)


def _skip_together(gradients, context, strategy):
    """The gradients, made non-finite on every replica when any replica's are.

    A ``LossScaleOptimizer`` skips a step whose gradients overflowed, but it decides on each
    replica's own gradients before they are summed: with float16 arithmetic one replica's half
    of the batch can overflow while the other's does not, and the sum then carries the overflow
    into the weights (seen on a CPU with native float16, AVX512-FP16). Agreeing first makes
    every replica skip the step and lower its scale together.
    """
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
    overflowed = context.all_reduce(
        tf.distribute.ReduceOp.SUM, _placed(1.0 - tf.cast(finite, tf.float32), strategy)
    )
    return [tf.where(overflowed > 0, tf.fill(tf.shape(g), float("nan")), g) for g in gradients]


def make_step(model, strategy):
    """One training step on a distributed global batch: a ``tf.function`` that takes one
    element of ``strategy.experimental_distribute_dataset(...)`` and returns the global batch's
    ``{"loss", <term>...}`` as scalar tensors (see the module's docstring)."""
    optimizer = model.optimizer
    replicas = strategy.num_replicas_in_sync
    if replicas > 1:
        _synchronize_batch_norm(model)
    if not optimizer.built:  # its slots, mirrored, before the step (not inside its graph)
        with strategy.scope():
            optimizer.build(model.trainable_variables)

    def replica_step(x, y):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            h = model(x, training=True)
            if replicas > 1:  # the loss sees the whole global batch, in replica order
                h, y = (context.all_gather(_placed(v, strategy), axis=0) for v in (h, y))
            terms = model.loss_terms(y, h)
            loss = optimizer.scale_loss(terms["loss"] / replicas)
        variables = model.trainable_variables
        gradients = tape.gradient(loss, variables)
        if replicas > 1 and isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            gradients = _skip_together(gradients, context, strategy)
        optimizer.apply(gradients, variables)
        return terms

    if model.jit_compile and replicas == 1:  # XLA where the compiled model asks (a GPU), as
        replica_step = tf.function(replica_step, jit_compile=True)  # fit; no collectives in it

    @tf.function
    def step(batch):
        terms = strategy.run(replica_step, args=batch)
        # Every replica computed the same global loss: their mean is that value.
        return {
            name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
            for name, value in terms.items()
        }

    return step


def fit(
    model, dataset, *, strategy, epochs, steps_per_epoch, initial_epoch=0, callbacks=(), verbose=1
):
    """Trains ``model`` on ``dataset`` as ``model.fit`` would, under ``strategy``.

    Args:
        model: a compiled :class:`tfhash.models.HashingModel`, built (with its optimizer and
            loss) under ``strategy.scope()``.
        dataset: an endless ``tf.data.Dataset`` of global ``(inputs, labels)`` batches, the
            same on every worker (``tfhash.data.train_dataset``); its batch size is the global
            batch, and must be a multiple of the number of replicas.
        strategy: the ``tf.distribute.Strategy`` (:func:`make_strategy`).
        epochs: train until this epoch (``fit``'s meaning: the last epoch's number, counted
            from 1), starting after ``initial_epoch`` completed ones.
        steps_per_epoch: global batches per epoch.
        callbacks: ``keras.callbacks.Callback`` instances, called in this order.
        verbose: 0 silent, 1 a progress bar, 2 one line per epoch.

    Returns:
        The ``keras.callbacks.History`` of the epochs trained.
    """
    step = make_step(model, strategy)
    options = tf.data.Options()
    # Every worker builds the same global batches: the strategy gives each worker its slices of
    # each one (no sharding by files or by whole batches).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = iter(strategy.experimental_distribute_dataset(dataset.with_options(options)))
    callback_list = keras.callbacks.CallbackList(
        list(callbacks),
        add_history=True,
        add_progbar=verbose != 0,
        model=model,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        means = _RunningMeans()
        for batch in range(steps_per_epoch):
            callback_list.on_train_batch_begin(batch)
            logs = means.update(step(next(batches)))
            callback_list.on_train_batch_end(batch, logs)
            if model.stop_training:
                break
        logs = dict(logs)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return model.history
