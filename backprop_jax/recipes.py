"""The book's recipes, and the sequel's: each a value that settles a run once.

A ``Recipe`` knows its network and that network's settings (their defaults are read from the
constructor's signature, their values checked by the constructor, so neither is written
twice), its data (``load_data``), its training settings (``config``) and what it reports at the
end (``report``). The command line's ``train`` is these calls and nothing else; in Python, the
same run is three lines::

    recipe = backprop_jax.RECIPES["rnnlm"].with_settings(hidden=100)
    data = recipe.load_data(seed=0)
    state, history = backprop_jax.train(recipe.model(data), data.arrays, recipe.config(data, seed=0))

Adding a recipe is adding an entry to ``RECIPES``; ``backprop-jax train --model NAME`` and
its flags follow from it. A new kind of data is an entry of ``DATA``: how it is loaded and what
a run on it reports.
"""

import dataclasses
import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from backprop_jax import datasets
from backprop_jax.nets import (
    Model, carried_rows, conv_net, deep_conv_net, multi_layer_net, rnnlm, seq2seq, shuffled_rows, two_layer_net,
    word2vec)
from backprop_jax.training import OPTIMIZERS, Epoch, TrainConfig, TrainState, iterations_per_epoch


class Setting(NamedTuple):
    """One tunable setting of a network."""
    name: str  # the name recorded in checkpoints (the command line's flag: --name, "_" as "-")
    argument: str  # the constructor's keyword argument it sets
    # What it takes: "count" (an integer >= 1), "size" (an integer >= 0), "sizes" (100,100,100),
    # "number" (>= 0), "fraction" (in [0, 1)), "init" (a positive number, he or xavier),
    # "choice" (one of choices), "flag" (True or False).
    kind: str
    help: str
    choices: tuple[str, ...] = ()


class RecipeData(NamedTuple):
    """What a recipe trains on, as ``Recipe.load_data`` made it."""
    name: str  # the dataset's name, as metrics.json and checkpoints record it
    arrays: tuple[Any, Any]  # ((x_train, t_train), (x_test, t_test)), as ``train`` takes them
    batch_size: int  # the run's batch size (a language model's data is laid out for it)
    arguments: dict[str, Any]  # the network's constructor arguments the data decide (a vocabulary size)
    source: Any  # what the arrays were made from: a datasets.SequenceData or TextData; None for MNIST
    description: str | None  # a line on the data, for the log (None: nothing to say)
    unit: str  # what an example is, for messages: "images", "problems", "windows of 35 words"
    iters_per_epoch: int | None = None  # updates in an epoch where the layout decides it (None: rows // batch)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A network of the book and the book's recipe for training it."""
    name: str  # as the command line takes it: --model NAME
    build: Callable[..., Model]  # the constructor
    settings: tuple[Setting, ...]  # the settings it takes
    summary: str
    optimizer: str = "sgd"  # the book's script's optimiser
    epochs: int | None = None  # its length in epochs, where the script gives one (else TrainConfig's iterations)
    evaluate_sample_num: int | None = None  # its evaluate_sample_num_per_epoch
    fixed: tuple[tuple[str, Any], ...] = ()  # (argument, value) pairs always passed: MNIST's shapes, the decoder's kind
    # (argument, value) pairs: the script's values where they differ from the constructor's
    script_defaults: tuple[tuple[str, Any], ...] = ()
    # What it learns, a key of DATA: "mnist", the sequel's character problems ("addition" or
    # "dates"), or "text" (a language model: a text file, by default the words of generated dates).
    data: str = "mnist"
    reverse: bool = False  # the sequel's trick for those: the question fed reversed
    batch_size: int | None = None  # the script's batch size (None: TrainConfig's, 100)
    max_grad: float | None = None  # the script's gradient clipping (the sequel's clip_grads), or none
    learning_rate: float | None = None  # the script's learning rate (None: the optimiser's default)
    # The order the script reads its data in, where it is not the network's own, recorded with
    # the settings so that a run is never resumed with another: "shuffled" (a new permutation
    # each epoch, the sequel's Trainer: shuffled_rows) or, for a language model, "carried" (a
    # window at every position, the reading position carried across epochs as the sequel's
    # RnnlmTrainer.fit over several epochs: rnnlm.every_window, carried_rows). None: the
    # network's (the book's draw at random; a language model's batch_size streams read in order,
    # from the start again each epoch: rnnlm.training_data, sequential_rows).
    reading: str | None = None
    # The sequel's train_better_rnnlm.py between its epochs: model.reset_state(), and the learning
    # rate divided by this when the epoch's held-out perplexity is no better than the best so far
    # (None: neither; the model's state carried on and the learning rate fixed).
    lr_divisor: float | None = None
    values: tuple[tuple[str, Any], ...] = ()  # (setting name, value) pairs given with ``with_settings``
    recorded: tuple[tuple[str, Any], ...] = ()  # (key, value) pairs recorded with the settings (a model file's digest)

    # --- the network ------------------------------------------------------------------------

    def defaults(self) -> dict[str, Any]:
        """``{setting name: default}``: the script's value, else the constructor's signature's."""
        parameters = inspect.signature(self.build).parameters
        given = dict(self.script_defaults)
        return {s.name: given.get(s.argument, parameters[s.argument].default) for s in self.settings}

    def with_settings(self, **values: Any) -> "Recipe":
        """This recipe with these settings of its network (the others stay as they are);
        ValueError for a name that is not one of its settings."""
        unknown = sorted(set(values) - {s.name for s in self.settings})
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a setting of {self.name} (its settings: "
                             f"{', '.join(s.name for s in self.settings) or 'none'})")
        return dataclasses.replace(self, values=tuple({**dict(self.values), **values}.items()))

    def setting(self, name: str) -> Any:
        """The value of setting ``name``: given, or its default."""
        return {**self.defaults(), **dict(self.values)}[name]

    def model(self, data: RecipeData | None = None) -> Model:
        """The network with these settings, sized for ``data`` where the data decide (a vocabulary);
        a ValueError from the constructor if a value is out of range, naming its argument."""
        if self.data != "mnist" and data is None:
            raise ValueError(f"the {self.name} network is sized by its data: pass the recipe's load_data()")
        by_name = {s.name: s for s in self.settings}
        kwargs = {**dict(self.script_defaults), **{by_name[name].argument: v for name, v in self.values}}
        model = self.build(**dict(self.fixed), **(data.arguments if data is not None else {}), **kwargs)
        if self.reading == "carried":
            model = model._replace(batch_rows=carried_rows(self.setting("time_size")))
        elif self.reading == "shuffled":
            model = model._replace(batch_rows=shuffled_rows)
        return model

    def record(self, data: RecipeData | None = None) -> dict[str, Any]:
        """The network as checkpoints record it, JSON-able: its name, every setting (given or
        default), what the data decided, and the recipe's ``recorded`` pairs."""
        values = {**self.defaults(), **dict(self.values)}
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        # The data's arrays a network is built from (word2vec's corpus) are the data's fingerprint's.
        decided = {k: v for k, v in (data.arguments if data is not None else {}).items() if not hasattr(v, "shape")}
        script = {k: v for k, v in (("reading", self.reading), ("lr_divisor", self.lr_divisor)) if v is not None}
        return {"model": self.name, **values, **decided, **script,
                **dict(self.recorded)}

    # --- the data ---------------------------------------------------------------------------

    def run_batch_size(self, batch_size: int | None = None) -> int:
        """The batch size of a run: ``batch_size``, else the script's, else ``TrainConfig``'s."""
        return batch_size or self.batch_size or TrainConfig().batch_size

    def load_data(self, path: Any = None, seed: int = 0, batch_size: int | None = None, *,
                  dataset: str = "auto") -> RecipeData:
        """The data this recipe learns, laid out for a run of ``batch_size`` (default: the script's).

        ``path``: for MNIST, the directory of its four files (default: the cache directory),
        ``dataset`` choosing ``"mnist"``, ``"mnist-sample"`` or ``"auto"`` (full MNIST where its
        files are, else the embedded sample); for the sequel's problems, a file of them or a list
        of their lines (default: 50,000 generated from ``seed``); for a language model, a text
        file (default: 20,000 generated dates in words). Raises ``datasets.DatasetError`` naming
        what cannot be read or is too short.
        """
        return DATA[self.data].load(self, path, seed, self.run_batch_size(batch_size), dataset)

    # --- the training settings and the report -----------------------------------------------

    def config(self, data: RecipeData, *, iters: int | None = None, epochs: int | None = None,
               learning_rate: float | None = None, optimizer: str | None = None, max_grad: float | None = None,
               seed: int = 0, evaluate_sample_num: int | None = None) -> TrainConfig:
        """The ``TrainConfig`` of a run on ``data``: each argument given overrides the recipe's value.

        The length is ``iters`` updates, else ``epochs`` (else the script's) of ``data``, else
        ``TrainConfig``'s; the script's learning rate goes with the script's optimiser only.
        """
        if iters is None:
            epochs = epochs or self.epochs
            per_epoch = data.iters_per_epoch or iterations_per_epoch(len(data.arrays[0][0]), data.batch_size)
            iters = TrainConfig().iters_num if epochs is None else epochs * per_epoch
        optimizer = optimizer or self.optimizer
        if learning_rate is None and optimizer == self.optimizer:
            learning_rate = self.learning_rate
        if self.lr_divisor is not None and optimizer == self.optimizer:  # its rate lowered between epochs
            make = OPTIMIZERS[optimizer]
            optimizer = optax.inject_hyperparams(make.make)(lr=learning_rate or make.learning_rate)
            learning_rate = None
        return TrainConfig(iters_num=iters, batch_size=data.batch_size, learning_rate=learning_rate,
                           optimizer=optimizer, seed=seed, max_grad=self.max_grad if max_grad is None else max_grad,
                           evaluate_sample_num_per_epoch=evaluate_sample_num or self.evaluate_sample_num,
                           iters_per_epoch=data.iters_per_epoch)

    def between_epochs(self) -> Callable[[TrainState, list[Epoch]], TrainState] | None:
        """What the script does between its epochs, for ``train``/``run``'s ``between_epochs``:
        with ``lr_divisor``, train_better_rnnlm.py's ``model.reset_state()`` and, when the
        last epoch's held-out perplexity is no better than the best before it, ``lr /= lr_divisor``
        (the learning rate ``config`` injects as an optimiser hyperparameter, so checkpoints
        keep it); None for the others."""
        divisor = self.lr_divisor
        if divisor is None:
            return None

        def between(state: TrainState, history: list[Epoch]) -> TrainState:
            state = state._replace(model_state=jax.tree.map(jnp.zeros_like, state.model_state))
            ppl = [e.test_perplexity if e.test_perplexity is not None else float("inf") for e in history]
            lr = optax.tree_utils.tree_get(state.opt_state, "lr")
            if len(ppl) > 1 and not ppl[-1] < min(ppl[:-1]) and lr is not None:  # best_ppl > ppl, else lr /= 4
                state = state._replace(opt_state=optax.tree_utils.tree_set(state.opt_state, lr=lr / divisor))
            return state
        return between

    def report(self, state: TrainState, data: RecipeData) -> list[str]:
        """The lines a run of this recipe ends with, past its last epoch's: the sequel's
        ``eval_perplexity`` of the held-out text for a language model, the exact-match accuracy
        of the held-out problems for a seq2seq model; none for MNIST."""
        return DATA[self.data].report(self, state, data)


# --- what the recipes learn: how each kind of data is loaded, and what a run on it reports ----

def _mnist(recipe: Recipe, path: Any, seed: int, batch_size: int, dataset: str) -> RecipeData:
    del recipe, seed
    data_dir = path or datasets.cache_dir()
    description = None
    if dataset == "auto":
        try:
            dataset = "mnist" if not datasets.missing_files(data_dir) else "mnist-sample"
            why = f"full MNIST not found in {data_dir}"
        except datasets.DatasetError as e:  # the sample needs no directory
            dataset, why = "mnist-sample", str(e)
        description = f"dataset: {dataset} " + (f"(full MNIST from {data_dir})" if dataset == "mnist"
                                                else f"(the embedded 5,000-digit sample; {why})")
    arrays = datasets.load_mnist(data_dir=data_dir) if dataset == "mnist" else datasets.load_mnist_sample()
    return RecipeData(dataset, arrays, batch_size, {}, None, description, "images")


def _text(recipe: Recipe, path: Any, seed: int, batch_size: int, dataset: str) -> RecipeData:
    del dataset
    name = path or f"dates in words (20,000 generated, seed {seed})"
    text = datasets.load_text(path if path else datasets.date_text(20_000, seed=seed))
    time_size = recipe.setting("time_size")
    try:
        streams = rnnlm.training_data(text.train, batch_size, time_size)  # refuses a text too short
        arrays = (rnnlm.every_window(text.train, time_size) if recipe.reading == "carried" else streams,
                  rnnlm.training_data(text.test, 1, time_size))
    except ValueError as e:
        raise datasets.DatasetError(f"{name}: {e}; use a longer text or a smaller batch_size") from None
    # The sequel's epoch, max_iters = data_size // (batch_size * time_size), over windows at every position.
    per_epoch = len(streams[0]) // batch_size if recipe.reading == "carried" else None
    return RecipeData(str(name), arrays, batch_size, {"vocab_size": len(text.word_to_id), "batch_size": batch_size},
                      text, f"dataset: {name}, {len(text.train)} words to train, {len(text.test)} to test, "
                            f"a vocabulary of {len(text.word_to_id)}", f"windows of {time_size} words", per_epoch)


def _words(recipe: Recipe, path: Any, seed: int, batch_size: int, dataset: str) -> RecipeData:
    del dataset
    name = path or f"dates in words (20,000 generated, seed {seed})"
    text = datasets.load_text(path if path else datasets.date_text(20_000, seed=seed))
    window, skip_gram = recipe.setting("window_size"), recipe.build is word2vec.skip_gram
    if len(text.test) < 2 * window + 1:
        raise datasets.DatasetError(f"{name}: {len(text.test)} held-out words, too few for one window of "
                                    f"{window} words on each side; use a longer text")
    arrays = (word2vec.negative_sampling_data(text.train, window, skip_gram=skip_gram),
              word2vec.negative_sampling_data(text.test, window, skip_gram=skip_gram))
    return RecipeData(str(name), arrays, batch_size, {"vocab_size": len(text.word_to_id), "corpus": text.train},
                      text, f"dataset: {name}, {len(text.train)} words to train, {len(text.test)} to test, "
                            f"a vocabulary of {len(text.word_to_id)}", "words in context")


def _problems(recipe: Recipe, path: Any, seed: int, batch_size: int, dataset: str) -> RecipeData:
    del dataset
    if isinstance(path, (list, tuple)):  # the lines themselves
        name, problems = f"{len(path)} problems given", datasets.load_sequence(path)
    elif path:
        name, problems = path, datasets.load_sequence(path)
    else:
        make = datasets.addition_lines if recipe.data == "addition" else datasets.date_lines
        name, problems = (f"{recipe.data} (50,000 generated, seed {seed})",
                          datasets.load_sequence(make(50_000, seed=seed)))
    arrays = seq2seq.training_data((problems.train, problems.test), reverse=recipe.reverse)
    arguments = {"vocab_size": len(problems.char_to_id), "question_length": int(problems.train[0].shape[1])}
    return RecipeData(str(name), arrays, batch_size, arguments, problems,
                      f"dataset: {name}, {len(problems.train[0])} problems to train, {len(problems.test[0])} "
                      f"to test" + (", the questions reversed" if recipe.reverse else ""), "problems")


def _nothing_more(recipe: Recipe, state: TrainState, data: RecipeData) -> list[str]:
    del recipe, state, data
    return []


def _perplexity(recipe: Recipe, state: TrainState, data: RecipeData) -> list[str]:
    value = rnnlm.eval_perplexity(state.params, data.source.test, 1, recipe.setting("time_size"))
    return [f"perplexity of the held-out text read in order, the state carried (the sequel's "
            f"eval_perplexity): {value:.2f}"]


def _exact_match(recipe: Recipe, state: TrainState, data: RecipeData) -> list[str]:
    del recipe
    (x_test, _) = data.arrays[1]
    questions = x_test[:, :data.arguments["question_length"]]
    value = float(seq2seq.exact_match(state.params, questions, data.source.test[1]))
    return [f"exact-match accuracy on the {len(questions)} held-out problems: {value:.4f}"]


class DataKind(NamedTuple):
    """A kind of data a recipe learns: how it is loaded (``Recipe.load_data``) and what a run on it
    reports at the end (``Recipe.report``)."""
    load: Callable[[Recipe, Any, int, int, str], RecipeData]  # (recipe, path, seed, batch_size, dataset)
    report: Callable[[Recipe, TrainState, RecipeData], list[str]]  # (recipe, state, data) -> lines


DATA = {
    "mnist": DataKind(_mnist, _nothing_more),
    "text": DataKind(_text, _perplexity),  # a language model's: the sequel's eval_perplexity
    "words": DataKind(_words, _nothing_more),  # word2vec's: its vectors are queried with `words`
    "addition": DataKind(_problems, _exact_match),  # the sequel's problems: their exact-match accuracy
    "dates": DataKind(_problems, _exact_match),
}
"""The kinds of data the recipes learn (``Recipe.data``), by name."""


def from_model(name: str, make: Callable[[], Model], recorded: tuple[tuple[str, Any], ...] = ()) -> Recipe:
    """A recipe for a network of your own that learns MNIST: ``make()`` returns the ``Model``,
    trained with ``TrainConfig``'s defaults; ``recorded``: (key, value) pairs recorded with it."""
    return Recipe(name, make, (), f"{name}, your own network", recorded=tuple(recorded))


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

_WORD2VEC_SETTINGS = (Setting("hidden", "hidden_size", "count", "size of the word vectors"),
                      Setting("window_size", "window_size", "count", "context words on each side of the target"))

_MNIST_SHAPES = (("input_size", 784), ("output_size", 10))

RECIPES = {recipe.name: recipe for recipe in (
    Recipe(
        "two-layer", two_layer_net.model,
        (Setting("hidden", "hidden_size", "count", "hidden units"),
         Setting("weight_init", "weight_init_std", "init", _INIT)),
        "the book's TwoLayerNet (sec. 5.7.2) and its train_neuralnet.py: 10,000 iterations of SGD 0.1",
        fixed=_MNIST_SHAPES),
    Recipe(
        "multi-layer", multi_layer_net.model,
        (Setting("hidden_sizes", "hidden_size_list", "sizes", "hidden layer sizes"),
         Setting("activation", "activation", "choice", "hidden activation", ("relu", "sigmoid")),
         Setting("weight_init", "weight_init_std", "init", _INIT),
         Setting("weight_decay", "weight_decay_lambda", "number", "L2 weight decay lambda"),
         Setting("batch_norm", "use_batchnorm", "flag", "batch normalisation after every hidden affine layer"),
         Setting("dropout", "drop_rate", "fraction", "fraction of hidden units dropped in training")),
        "the book's MultiLayerNet(Extend) (sec. 6.2-6.4)",
        fixed=_MNIST_SHAPES),
    Recipe(
        "convnet", conv_net.model,
        (Setting("hidden", "hidden_size", "count", "hidden units of the affine layer"),
         Setting("weight_init", "weight_init_std", "init", _INIT),
         Setting("filter_num", "filter_num", "count", "convolution filters"),
         Setting("filter_size", "filter_size", "count", "filter height and width"),
         Setting("pad", "pad", "size", "convolution padding"),
         Setting("stride", "stride", "count", "convolution stride")),
        "the book's SimpleConvNet (sec. 7.5) and its train_convnet.py: 20 epochs of Adam",
        optimizer="adam", epochs=20),
    Recipe(
        "deep-convnet", deep_conv_net.model,
        (Setting("hidden", "hidden_size", "count", "hidden units of the first affine layer"),),
        "chapter 8's DeepConvNet (sec. 8.1.1) and its train_deepnet.py: 20 epochs of Adam, each "
        "evaluated on 1,000 images",
        optimizer="adam", epochs=20, evaluate_sample_num=1000),
    # The sequel's chapter 7 and 8 scripts: train_seq2seq.py (addition, wordvec 16, hidden 128,
    # batch 128, 25 epochs of Adam, max_grad 5) and ch08/train.py (dates, hidden 256, 10 epochs).
    Recipe(
        "seq2seq", seq2seq.model, _SEQ2SEQ_SETTINGS,
        "the sequel's Seq2seq (sec. 7.3) on addition problems and its train_seq2seq.py: 25 epochs of "
        "Adam, batch 128, gradients clipped at 5, a new order each epoch",
        optimizer="adam", epochs=25, data="addition", batch_size=128, max_grad=5.0, reading="shuffled"),
    Recipe(
        "peeky-seq2seq", seq2seq.model, _SEQ2SEQ_SETTINGS,
        "the sequel's PeekySeq2seq (sec. 7.4.2) on addition problems, the question reversed, as its "
        "train_seq2seq.py's best",
        optimizer="adam", epochs=25, fixed=(("peeky", True),), data="addition", reverse=True, batch_size=128,
        max_grad=5.0, reading="shuffled"),
    Recipe(
        "attention-seq2seq", seq2seq.model, _SEQ2SEQ_SETTINGS,
        "the sequel's AttentionSeq2seq (sec. 8.3) on dates, the question reversed, and its ch08/train.py: "
        "hidden 256, 10 epochs of Adam, batch 128, gradients clipped at 5",
        optimizer="adam", epochs=10, fixed=(("attention", True),), script_defaults=(("hidden_size", 256),),
        data="dates", reverse=True, batch_size=128, max_grad=5.0, reading="shuffled"),
    # The sequel's ch04/train.py: window 5, hidden 100, batch 100, 10 epochs of Adam, each a new order.
    Recipe(
        "cbow", word2vec.cbow, _WORD2VEC_SETTINGS,
        "the sequel's CBOW with negative sampling (sec. 4.3) and its ch04/train.py: window 5, 100-word "
        "vectors, 10 epochs of Adam, batch 100; query the vectors with the words command",
        optimizer="adam", epochs=10, data="words", batch_size=100, reading="shuffled",
        script_defaults=(("hidden_size", 100), ("window_size", 5))),
    Recipe(
        "skip-gram", word2vec.skip_gram, _WORD2VEC_SETTINGS,
        "the sequel's SkipGram with negative sampling (sec. 4.3), by ch04/train.py's recipe",
        optimizer="adam", epochs=10, data="words", batch_size=100, reading="shuffled",
        script_defaults=(("hidden_size", 100), ("window_size", 5))),
    # The sequel's ch06 scripts: train_rnnlm.py (batch 20, wordvec 100, hidden 100, time 35, SGD lr
    # 20, max_grad 0.25, 4 epochs) and train_better_rnnlm.py (650 units, dropout 0.5, 40 epochs).
    Recipe(
        "rnnlm", rnnlm.model, _RNNLM_SETTINGS,
        "the sequel's Rnnlm (sec. 6.4) and its train_rnnlm.py: truncated BPTT over windows of 35 words, "
        "4 epochs of SGD 20, batch 20, gradients clipped at 0.25, the reading position carried across epochs",
        epochs=4, data="text", batch_size=20, max_grad=0.25, learning_rate=20.0,
        script_defaults=(("time_size", 35),), reading="carried"),
    Recipe(
        "better-rnnlm", rnnlm.better_model, _RNNLM_SETTINGS,
        "the sequel's BetterRnnlm (sec. 6.5: two LSTM layers, dropout, tied weights) and its "
        "train_better_rnnlm.py: 40 epochs of SGD 20, batch 20, gradients clipped at 0.25, the state reset "
        "every epoch and the learning rate divided by 4 when the held-out perplexity worsens",
        epochs=40, data="text", batch_size=20, max_grad=0.25, learning_rate=20.0,
        script_defaults=(("time_size", 35),), lr_divisor=4.0),
)}
"""The book's networks and their recipes by the names the command line takes (``--model two-layer``)."""
