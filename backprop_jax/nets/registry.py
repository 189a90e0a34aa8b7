"""The book's networks by name, with their settings: the one place where a network's tunable
settings, their defaults and the book's training recipe for it are written down.

Each ``Recipe`` names a constructor of this package (``two_layer_net.model``, ...); a setting's
default is read from that constructor's signature, and its value is checked by the
constructor, so neither is written twice. The command line builds its ``--model`` flags, their
defaults and their help from ``RECIPES``, and checkpoints record a network by
``Recipe.record(values)``.
"""

import inspect
from typing import Any, Callable, NamedTuple

from backprop_jax.nets import conv_net, deep_conv_net, multi_layer_net, rnnlm, seq2seq, two_layer_net


class Setting(NamedTuple):
    """One tunable setting of a network."""
    name: str  # the name recorded in checkpoints, and the command line's flag (--name, "_" as "-")
    argument: str  # the constructor's keyword argument it sets
    # What it takes: "count" (an integer >= 1), "size" (an integer >= 0), "sizes" (100,100,100),
    # "number" (>= 0), "fraction" (in [0, 1)), "init" (a positive number, he or xavier),
    # "choice" (one of choices), "flag" (True or False).
    kind: str
    help: str
    choices: tuple = ()

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")


class Recipe(NamedTuple):
    """A network of the book and the book's recipe for training it."""
    build: Callable  # the constructor, returning a Model
    settings: tuple  # the Settings it takes
    summary: str
    optimizer: str = "sgd"  # the book's script's optimiser
    epochs: int | None = None  # its length in epochs, where the script gives one (else 10,000 iterations)
    evaluate_sample_num: int | None = None  # its evaluate_sample_num_per_epoch
    fixed: Any = ()  # (argument, value) pairs always passed: MNIST's shapes, the decoder's kind
    defaults_: Any = ()  # (argument, value) pairs: the script's values where they differ from the constructor's
    # What it learns: "mnist", the sequel's character problems ("addition" or "dates"), or "text"
    # (a language model: a text file, by default the words of generated dates).
    data: str = "mnist"
    reverse: bool = False  # the sequel's trick for those: the question fed reversed
    batch_size: int | None = None  # the script's batch size (None: TrainConfig's, 100)
    max_grad: float | None = None  # the script's gradient clipping (the sequel's clip_grads), or none
    learning_rate: float | None = None  # the script's learning rate (None: the optimiser's default)

    def defaults(self):
        """``{setting name: default}``: the script's value, else the constructor's signature's."""
        parameters = inspect.signature(self.build).parameters
        given = dict(self.defaults_)
        return {s.name: given.get(s.argument, parameters[s.argument].default) for s in self.settings}

    def data_arguments(self, data, batch_size=None):
        """The constructor's arguments that the data decide: for the sequel's character problems
        (a ``datasets.SequenceData``), the vocabulary and the question's length; for a language
        model (a ``datasets.TextData``), the vocabulary and the ``batch_size`` whose hidden states
        it carries; none for MNIST."""
        if self.data == "mnist":
            return {}
        if self.data == "text":
            return {"vocab_size": len(data.word_to_id), "batch_size": batch_size or self.batch_size}
        return {"vocab_size": len(data.char_to_id), "question_length": int(data.train[0].shape[1])}

    def make(self, data_arguments=None, **values):
        """The Model with these settings (the others at their defaults); a ValueError from the
        constructor if a value is out of range, naming its argument."""
        unknown = sorted(set(values) - {s.name for s in self.settings})
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a setting of this network (its settings: "
                             f"{', '.join(s.name for s in self.settings) or 'none'})")
        by_name = {s.name: s for s in self.settings}
        kwargs = {**dict(self.defaults_), **{by_name[name].argument: value for name, value in values.items()}}
        return self.build(**dict(self.fixed), **(data_arguments or {}), **kwargs)

    def record(self, values):
        """Every setting's value (given or default), JSON-able, as checkpoints record it."""
        record = {**self.defaults(), **values}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}


_INIT = ("init std: a number, 'he' (sqrt(2 / fan-in)) or 'xavier' (sqrt(1 / fan-in), suits sigmoid); "
         "the multi-layer net's He is the book's MultiLayerNet default whatever the activation")

_RNNLM_SETTINGS = (Setting("hidden", "hidden_size", "count", "hidden units of the LSTMs"),
                   Setting("wordvec_size", "wordvec_size", "count", "size of the word vectors"),
                   Setting("dropout", "dropout", "fraction",
                           "fraction of units the sequel's TimeDropout drops between layers in training"),
                   Setting("time_size", "time_size", "count",
                           "words in a truncated-BPTT window: how far back in time the backward goes"))

_SEQ2SEQ_SETTINGS = (Setting("hidden", "hidden_size", "count", "hidden units of the LSTMs"),
                     Setting("wordvec_size", "wordvec_size", "count", "size of the character vectors"))

RECIPES = {
    "two-layer": Recipe(
        two_layer_net.model,
        (Setting("hidden", "hidden_size", "count", "hidden units"),
         Setting("weight_init", "weight_init_std", "init", _INIT)),
        "the book's TwoLayerNet (sec. 5.7.2) and its train_neuralnet.py: 10,000 iterations of SGD 0.1",
        fixed=(("input_size", 784), ("output_size", 10))),
    "multi-layer": Recipe(
        multi_layer_net.model,
        (Setting("hidden_sizes", "hidden_size_list", "sizes", "hidden layer sizes"),
         Setting("activation", "activation", "choice", "hidden activation", ("relu", "sigmoid")),
         Setting("weight_init", "weight_init_std", "init", _INIT),
         Setting("weight_decay", "weight_decay_lambda", "number", "L2 weight decay lambda"),
         Setting("batch_norm", "use_batchnorm", "flag", "batch normalisation after every hidden affine layer"),
         Setting("dropout", "drop_rate", "fraction", "fraction of hidden units dropped in training")),
        "the book's MultiLayerNet(Extend) (sec. 6.2-6.4)",
        fixed=(("input_size", 784), ("output_size", 10))),
    "convnet": Recipe(
        conv_net.model,
        (Setting("hidden", "hidden_size", "count", "hidden units of the affine layer"),
         Setting("weight_init", "weight_init_std", "init", _INIT),
         Setting("filter_num", "filter_num", "count", "convolution filters"),
         Setting("filter_size", "filter_size", "count", "filter height and width"),
         Setting("pad", "pad", "size", "convolution padding"),
         Setting("stride", "stride", "count", "convolution stride")),
        "the book's SimpleConvNet (sec. 7.5) and its train_convnet.py: 20 epochs of Adam",
        optimizer="adam", epochs=20),
    "deep-convnet": Recipe(
        deep_conv_net.model,
        (Setting("hidden", "hidden_size", "count", "hidden units of the first affine layer"),),
        "chapter 8's DeepConvNet (sec. 8.1.1) and its train_deepnet.py: 20 epochs of Adam, each "
        "evaluated on 1,000 images",
        optimizer="adam", epochs=20, evaluate_sample_num=1000),
    # The sequel's chapter 7 and 8 scripts: train_seq2seq.py (addition, wordvec 16, hidden 128,
    # batch 128, 25 epochs of Adam, max_grad 5) and ch08/train.py (dates, hidden 256, 10 epochs).
    "seq2seq": Recipe(
        seq2seq.model, _SEQ2SEQ_SETTINGS,
        "the sequel's Seq2seq (sec. 7.3) on addition problems and its train_seq2seq.py: 25 epochs of "
        "Adam, batch 128, gradients clipped at 5",
        optimizer="adam", epochs=25, data="addition", batch_size=128, max_grad=5.0),
    "peeky-seq2seq": Recipe(
        seq2seq.model, _SEQ2SEQ_SETTINGS,
        "the sequel's PeekySeq2seq (sec. 7.4.2) on addition problems, the question reversed, as its "
        "train_seq2seq.py's best",
        optimizer="adam", epochs=25, fixed=(("peeky", True),), data="addition", reverse=True, batch_size=128,
        max_grad=5.0),
    "attention-seq2seq": Recipe(
        seq2seq.model, _SEQ2SEQ_SETTINGS,
        "the sequel's AttentionSeq2seq (sec. 8.3) on dates, the question reversed, and its ch08/train.py: "
        "hidden 256, 10 epochs of Adam, batch 128, gradients clipped at 5",
        optimizer="adam", epochs=10, fixed=(("attention", True),), defaults_=(("hidden_size", 256),),
        data="dates", reverse=True, batch_size=128, max_grad=5.0),
    # The sequel's ch06 scripts: train_rnnlm.py (batch 20, wordvec 100, hidden 100, time 35, SGD lr
    # 20, max_grad 0.25, 4 epochs) and train_better_rnnlm.py (650 units, dropout 0.5, 40 epochs).
    "rnnlm": Recipe(
        rnnlm.model, _RNNLM_SETTINGS,
        "the sequel's Rnnlm (sec. 6.4) and its train_rnnlm.py: truncated BPTT over windows of 35 words, "
        "4 epochs of SGD 20, batch 20, gradients clipped at 0.25",
        epochs=4, data="text", batch_size=20, max_grad=0.25, learning_rate=20.0, defaults_=(("time_size", 35),)),
    "better-rnnlm": Recipe(
        rnnlm.better_model, _RNNLM_SETTINGS,
        "the sequel's BetterRnnlm (sec. 6.5: two LSTM layers, dropout, tied weights) and its "
        "train_better_rnnlm.py: 40 epochs of SGD 20, batch 20, gradients clipped at 0.25",
        epochs=40, data="text", batch_size=20, max_grad=0.25, learning_rate=20.0, defaults_=(("time_size", 35),)),
}
"""The book's networks by the names the command line takes (``--model two-layer``)."""
