"""backprop_jax: the backpropagation chapter of "Deep Learning from Scratch" in JAX.

Every layer is a pure function decorated with ``jax.custom_vjp`` whose
backward is the textbook's hand-derived rule. ``layer.fwd(*args)`` returns
``(out, residuals)`` and ``layer.bwd(residuals, dout)`` one cotangent per
argument, so the book's backward chain can be run by hand; ``jax.grad`` runs
the same rules automatically.

The package, in its order of dependence:

* ``layers``: the hand rules, one family per file;
* ``nets``: the ``Model`` contract, ``nn`` (layers to compose, in the style of
  stax) and the book's networks;
* ``checking``: ``gradcheck``, ``without_hand_rules`` and ``hand_rules``;
* ``training``: the compiled loop, runs with checkpoints, several processes;
* ``count_based`` and ``similarity``: the sequel's count-based word vectors and their queries;
* ``book_params`` (the book's pickled parameters), ``datasets`` (MNIST), ``graph`` (drawing), ``shopping`` (the apple and
  orange graphs), ``exercises`` (write a backward, get feedback);
* ``recipes``: the book's recipes, each settling a run (network, data, ``TrainConfig``, report);
* ``cli`` (the ``backprop-jax`` command): flags -> a recipe -> the library.

Everything public is re-exported here, each module imported when first used.
"""

import importlib

# Imported on first use (PEP 562): ``import backprop_jax`` takes milliseconds, and the command
# line can take charge of its signals before JAX is loaded. Each public name, by its module.
_SUBMODULES = frozenset({
    "book_params", "checking", "count_based", "datasets", "exercises", "experiments", "graph", "layers", "nets",
    "recipes", "shopping", "similarity", "training"})
_FROM = {
    "backprop_jax._io": "atomic_path writable_directory write_json",
    "backprop_jax.book_params": "BookParamsError fit_params load_book_params save_book_params",
    "backprop_jax.experiments": "compare_optimizers",
    "backprop_jax.checking": """Comparison Entry GradcheckReport HandRules Kept Kink RuleCheck RuleUse assert_gradcheck
        gradcheck hand_rules without_hand_rules""",
    "backprop_jax.layers": """add affine batch_norm col2im convolution cross_entropy_error dropout im2col CONV_METHODS
        ConvMethod conv_method convolution_xla default_conv_method max_pooling_xla init_batch_norm_state max_pooling
        mul relu sigmoid softmax softmax_with_loss weight_decay embedding lstm_cell matmul rnn_cell time_affine
        time_lstm time_rnn time_softmax_with_loss embedding_dot sigmoid_with_loss time_dropout attention
        attention_weight attention_weights time_attention weight_sum gru_cell time_gru UnigramSampler
        negative_sampling_loss time_bilstm time_sigmoid_with_loss""",
    "backprop_jax.nets": """Metric Model carried_rows conv_net count_correct deep_conv_net generation mixed_precision
        multi_layer_net nn rnnlm seq2seq sequential_rows shuffled_rows simple_rnnlm two_layer_net word2vec""",
    "backprop_jax.recipes": "RECIPES Recipe RecipeData",
    "backprop_jax.training": """OPTIMIZERS Checkpoints CheckpointWriteError DistributedError Epoch Evaluation Optimizer
        RunError RunInterrupted TrainConfig TrainingDiverged TrainState data_fingerprint data_parallel_mesh
        eval_chunks evaluation_sets init_state iterations_per_epoch make_epoch_fn make_epochs_fn optimizers
        perplexity restore_run run run_record run_settings train estimate_cost Cost ComputedValues computed_values
        check_memory check_fits DeviceOutOfMemory out_of_memory_errors""",
}
_MODULE_OF = {name: module for module, names in _FROM.items() for name in names.split()}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # Python sets it as an attribute
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once; the next lookup is an ordinary attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    # Layers with hand-written backward rules (chapter 5, sec. 6.4).
    "mul", "add", "relu", "sigmoid", "affine", "softmax_with_loss", "weight_decay",
    # The rest of the book's layers (chapters 6 and 7).
    "dropout", "batch_norm", "init_batch_norm_state", "convolution", "max_pooling",
    "im2col", "col2im",
    # The same convolution and pooling through XLA's convolution and reduce-window, backward by hand.
    "convolution_xla", "max_pooling_xla", "CONV_METHODS", "ConvMethod", "conv_method", "default_conv_method",
    # Plain functions (chapters 3 and 4).
    "softmax", "cross_entropy_error",
    # The sequel's layers for words and sequences, backpropagation through time by hand.
    "matmul", "embedding", "time_affine", "time_softmax_with_loss", "rnn_cell", "time_rnn", "lstm_cell", "time_lstm",
    "embedding_dot", "sigmoid_with_loss", "time_dropout", "attention_weight", "weight_sum", "attention",
    "time_attention", "attention_weights", "gru_cell", "time_gru", "UnigramSampler", "negative_sampling_loss",
    "time_bilstm", "time_sigmoid_with_loss",
    # Checking hand rules.
    "gradcheck", "assert_gradcheck", "GradcheckReport", "Entry", "Comparison", "Kink", "RuleCheck",
    "without_hand_rules", "hand_rules", "HandRules", "RuleUse", "Kept",
    # Networks: the contract, the layer library, the book's nets.
    "Model", "Metric", "count_correct", "nn", "two_layer_net", "multi_layer_net", "conv_net", "deep_conv_net", "seq2seq",
    "rnnlm", "sequential_rows", "shuffled_rows", "simple_rnnlm", "word2vec", "generation", "carried_rows",
    "mixed_precision",
    # The sequel's count-based word vectors and their queries (ch. 2, 4).
    "count_based", "similarity",
    # The book's saved parameters (pickles), read without running code.
    "load_book_params", "save_book_params", "fit_params", "BookParamsError",
    # Learning.
    "train", "TrainConfig", "TrainState", "Epoch", "TrainingDiverged", "init_state", "OPTIMIZERS", "optimizers",
    "Optimizer", "data_parallel_mesh", "make_epoch_fn", "make_epochs_fn", "eval_chunks", "Evaluation",
    "evaluation_sets", "iterations_per_epoch", "perplexity",
    # What training will cost, from shapes alone; whether it fits the device.
    "estimate_cost", "Cost", "ComputedValues", "computed_values", "check_memory", "check_fits", "DeviceOutOfMemory",
    "out_of_memory_errors",
    # Runs with files: checkpoints, metrics, resume; the optimiser comparison.
    "run", "RunError", "RunInterrupted", "data_fingerprint", "Checkpoints", "CheckpointWriteError", "restore_run",
    "run_record", "run_settings", "compare_optimizers", "DistributedError",
    "atomic_path", "write_json", "writable_directory",
    # The book's recipes: a run settled once (network, data, training settings, report).
    "RECIPES", "Recipe", "RecipeData",
    # Subpackages and modules.
    "recipes", "layers", "nets", "checking", "training", "datasets", "experiments", "shopping", "graph", "book_params",
    "exercises",
]
