"""``backprop-jax train``: flags -> a recipe (``backprop_jax.recipes``) -> ``training.run``."""

import os
import sys
import time

from backprop_jax.cli._flags import (
    add_data_flags, add_model_flags, as_flags, build_model, check_model_fits, fail, load_data, non_negative_int,
    number, positive_int, recipe_from_flags, recipes, same_function, seconds, seed)


def add_parser(sub):
    from backprop_jax.training import DIVERGENCE_EPOCHS, DIVERGENCE_FACTOR, OPTIMIZERS, TrainConfig

    defaults = TrainConfig()
    train = sub.add_parser("train", help="train a network on MNIST, or one of the sequel's on its data "
                                         "(the book's recipe by default)",
                           description="Train a network with the hand-written backward rules, by the "
                                       "book's recipe for it unless the flags say otherwise.")
    add_data_flags(train, sequences=True)
    add_model_flags(train)
    opt = train.add_argument_group("training")
    length = opt.add_mutually_exclusive_group()
    length.add_argument("--iters", type=positive_int, default=None,
                        help=f"mini-batch updates (default {defaults.iters_num}, as the book's "
                             f"train_neuralnet.py; a recipe with epochs: those, e.g. the convnet's 20)")
    length.add_argument("--epochs", type=positive_int, default=None,
                        help="train this many epochs (train size / batch size updates each) instead")
    opt.add_argument("--batch-size", type=positive_int, default=None,
                     help=f"default {defaults.batch_size}; the seq2seq models' 128 and the language models' 20, as "
                          f"the sequel's scripts")
    opt.add_argument("--learning-rate", "--lr", type=number(low_exclusive=0), default=None,
                     help="default: the recipe's (the language models' 20), else the optimiser's, " + ", ".join(
                         f"{name} {o.learning_rate}" for name, o in OPTIMIZERS.items()))
    opt.add_argument("--optimizer", choices=list(OPTIMIZERS), default=None,
                     help="default: the model's, " + ", ".join(
                         f"{name} {recipe.optimizer}" for name, recipe in recipes().items())
                     + f", {defaults.optimizer} for a model from a file")
    opt.add_argument("--max-grad", type=number(low_exclusive=0), default=None, metavar="NORM",
                     help="clip the gradients to this global norm before each update, as the sequel's "
                          "clip_grads (default: none; 5 for the seq2seq models and 0.25 for the language "
                          "models, as the sequel's scripts)")
    opt.add_argument("--devices", type=positive_int, default=None,
                     help="split every mini-batch over this many devices (default: all local devices)")
    opt.add_argument("--seed", type=seed, default=defaults.seed,
                     help="seed of the initial weights and of the batch order (default 0)")
    opt.add_argument("--evaluate-sample-num", type=positive_int, default=None, metavar="N",
                     help="evaluate each epoch on the first N training and test images only, as the "
                          "book's Trainer(evaluate_sample_num_per_epoch=N); the last epoch on all")
    opt.add_argument("--ignore-divergence", action="store_true",
                     help=f"go on when the loss stays {DIVERGENCE_FACTOR:g}x above its starting value for "
                          f"{DIVERGENCE_EPOCHS} epochs (default: stop there, as a learning rate far too "
                          f"large does that)")
    _add_process_flags(train)
    files = train.add_argument_group("output")
    files.add_argument("--out", help="directory for metrics.json, curves.png and checkpoints/")
    files.add_argument("--resume", action="store_true",
                       help="continue from the last checkpoint in --out, if any (else start a new run)")
    files.add_argument("--accept-unverified", action="store_true",
                       help="with --resume: accept a checkpoint of an older format that has no digest, its "
                            "arrays and record unverified (default: refuse it)")
    files.add_argument("--start-over", action="store_true",
                       help="start a new run in --out although its metrics.json is of a run whose "
                            "checkpoints/ is gone (default: refuse, as that metrics.json would be lost)")
    files.add_argument("--checkpoint-every", type=positive_int, default=None, metavar="EPOCHS",
                       help="save a checkpoint after every EPOCHS-th epoch, where training pauses "
                            "(default: by time alone, see --checkpoint-interval); always after the last")
    files.add_argument("--checkpoint-interval", type=non_negative_int, default=10, metavar="SECONDS",
                       help="but no sooner than SECONDS after the previous one (default 10; 0: no "
                            "minimum); a crash loses little more than this much training")
    files.add_argument("--no-progress", action="store_true", help="no progress bar")
    files.add_argument("--every-epoch", action="store_true",
                       help="print a line for every epoch (default: all of them up to 30 epochs, "
                            "else about 20 evenly spread, and the last; metrics.json has them all)")


def _add_process_flags(train):
    import inspect

    from backprop_jax.training import join

    joins = {name: p.default for name, p in inspect.signature(join).parameters.items()}
    dist = train.add_argument_group(
        "several processes or machines (jax.distributed)",
        "Start the same command once per process, each with its --process-id; every mini-batch is "
        "split over all devices of all processes. --out must be a directory that all processes see.")
    dist.add_argument("--coordinator", metavar="HOST:PORT",
                      help="address of process 0, which all processes connect to")
    dist.add_argument("--num-processes", type=positive_int, metavar="N", help="processes in the run")
    dist.add_argument("--process-id", type=non_negative_int, metavar="I", help="this process, 0 to N-1")
    dist.add_argument("--distributed", action="store_true",
                      help="join a multi-process run whose settings JAX detects from the cluster "
                           "(SLURM, Open MPI, Kubernetes, Cloud TPU); implied by the three flags above")
    dist.add_argument("--heartbeat-timeout", type=seconds, default=joins["heartbeat_timeout"], metavar="SECONDS",
                      help="a process silent this long counts as dead, and the others stop (default %(default)s)")
    dist.add_argument("--connect-timeout", type=seconds, default=joins["connect_timeout"], metavar="SECONDS",
                      help="how long to wait for all processes to join (default %(default)s)")


def run(args, parser):
    """Flags -> the recipe's data, model and config -> ``training.run`` -> the recipe's report."""
    if args.resume and not args.out:
        parser.error("--resume needs --out DIR, the directory of the run to continue")
    recipe = recipe_from_flags(args, parser)
    data = load_data(recipe, args, parser, args.batch_size)
    model = build_model(recipe, data, args, parser)
    n_processes = _join_processes(args, parser)
    check_model_fits(model, args, parser)
    import jax

    from backprop_jax.training import check_batch_split, data_parallel_mesh

    primary = jax.process_index() == 0
    say = print if primary else (lambda *a, **k: None)  # only process 0 logs
    try:
        mesh = data_parallel_mesh(args.devices)
    except ValueError as e:
        parser.error(f"--devices: {e}")
    try:
        check_batch_split(data.batch_size, mesh.size)
    except ValueError as e:
        parser.error(f"--batch-size: {e}, or pass --devices")
    if data.description:
        say(data.description)
    try:
        config = recipe.config(data, iters=args.iters, epochs=args.epochs, learning_rate=args.learning_rate,
                               optimizer=args.optimizer, max_grad=args.max_grad, seed=args.seed,
                               evaluate_sample_num=args.evaluate_sample_num)
    except ValueError as e:  # a length or batch size past what the compiled loop counts
        given = [f"{flag} {value}" for flag, value in (("--iters", args.iters), ("--epochs", args.epochs),
                                                       ("--batch-size", args.batch_size)) if value is not None]
        parser.error(f"{', '.join(given) or 'the recipe'}: {e}")
    settings = recipe.record(data)
    if args.resume and "model_file_sha256" in settings:
        settings = _as_recorded(args.out, settings)
    if n_processes > 1:
        _check_processes_agree(args, {**settings, **config.record()}, data)
    (x_train, _), (x_test, _) = data.arrays
    say(f"training {settings} on {len(x_train)} {data.unit} ({len(x_test)} to test), "
        f"{config.iters_num} iterations of batch {config.batch_size}, {config.optimizer_name()}, on {mesh.size} "
        f"{mesh.devices.flat[0].platform} device{'s' if mesh.size > 1 else ''}"
        + (f" in {n_processes} processes" if n_processes > 1 else ""))
    _say_cost(model, data, config, mesh, say)
    start = time.perf_counter()
    state, history = _run(model, data, config, settings, mesh, args, n_processes, recipe.between_epochs())
    if not primary:
        return
    if history:
        print(f"final {history[-1].result()} after {history[-1].iteration} iterations "
              f"({time.perf_counter() - start:.1f} s)")
    for line in recipe.report(state, data):
        print(line)
    if args.out:
        print(f"wrote {os.path.join(args.out, 'metrics.json')}, {os.path.join(args.out, 'curves.png')} and "
              f"checkpoints in {os.path.join(args.out, 'checkpoints')}")


# The estimate is optimistic (real first epochs took 2 to 4 times as long): 10 s estimated is a
# first epoch of half a minute or more.
_ANNOUNCED_EPOCH_SECONDS = 10


def _say_cost(model, data, config, mesh, say):
    """The cost estimate's line, before compiling, when the first epoch is estimated to take
    ``_ANNOUNCED_EPOCH_SECONDS`` or more (and training is not refused as too large)."""
    from backprop_jax.training import check_memory, estimate_cost

    try:
        cost = estimate_cost(model, data.arrays, config, mesh.size)
        check_memory(model, data.arrays, config, mesh.size, cost=cost)
    except Exception:  # noqa: BLE001 - training reports data that do not fit the model or device, in its words
        return
    if cost.first_epoch_longer_than(_ANNOUNCED_EPOCH_SECONDS):
        say(cost.line())


def _run(model, data, config, settings, mesh, args, n_processes, between_epochs):
    """``training.run`` with the flags' files and checks; its errors as one line each."""
    import jax

    from backprop_jax.training import (
        DIVERGENCE_FACTOR, CheckpointWriteError, DeviceOutOfMemory, RunError, RunInterrupted, TrainingDiverged,
        drop_event_loop_leftovers, run)

    from backprop_jax.cli._signals import current

    stop = _stop_cleanly_on_signals(args)
    drop_event_loop_leftovers()  # from the start: orbax's leftovers can print before the failure surfaces
    try:
        return run(model, data.arrays, config, dataset=data.name, settings=settings, out=args.out,
                   resume=args.resume, checkpoint_every=args.checkpoint_every,
                   checkpoint_interval=args.checkpoint_interval, progress=not args.no_progress,
                   mesh=mesh if mesh.size > 1 else None,
                   every_epoch=args.every_epoch,
                   divergence_factor=None if args.ignore_divergence else DIVERGENCE_FACTOR, stop=stop,
                   accept_unverified=args.accept_unverified, start_over=args.start_over,
                   between_epochs=between_epochs)
    except CheckpointWriteError as e:
        _exit_past_leftovers(f"backprop-jax: error: {as_flags(e)}")
    except (RunError, TrainingDiverged, ValueError) as e:  # the library's one-line errors on bad input
        fail(as_flags(e))
    except DeviceOutOfMemory as e:  # the run closed its files: the checkpoints written before are there
        fail(as_flags(e) + (f"; the checkpoints written before it are kept in {args.out}" if args.out else ""))
    except RunInterrupted as e:  # the run saved the iteration reached and closed its files
        import signal
        where = (f"the last checkpoint is iteration {e.checkpoint}; resume with --resume --out {args.out}"
                 if e.checkpoint is not None else "nothing was saved (no --out)")
        sys.stderr.write(f"backprop-jax: {e}; {where}\n")
        sys.exit(128 + signal.Signals[e.reason].value)
    except jax.errors.JaxRuntimeError as e:
        if n_processes == 1:
            raise
        fail(f"process {jax.process_index()} lost contact with the other processes of this run ({e}); once "
             f"all are stopped, start every process again with --resume to continue from the last checkpoint")
    finally:
        current().immediate_mode()  # the run is over: a signal now ends the command at once


def _as_recorded(out, settings):
    """``settings`` of a ``FILE.py:FUNCTION`` model with the file spelled as the run in ``out``
    recorded it, when it is the same function of a file with the same content (the record's
    digest): a resume may give the file by another path (absolute, from elsewhere, a copy).
    Anything else stays as given, for the run to compare with its record and refuse."""
    from backprop_jax.training import RunError, run_settings

    try:
        saved = run_settings(out)
    except RunError:  # no run there yet, or none readable: the run itself says what it finds
        return settings
    name = saved.get("model")
    if same_function(settings["model"], name) and saved.get("model_file_sha256") == settings["model_file_sha256"]:
        return {**settings, "model": name}
    return settings


def _join_processes(args, parser):
    """Joins a multi-process run if the flags ask for one; returns the number of processes."""
    from backprop_jax.training import DistributedError, join, parse_host_port

    wanted = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and wanted == (None, None, None):
        return 1
    if args.coordinator is not None and parse_host_port(args.coordinator) is None:
        parser.error(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    if not args.distributed and None in wanted:
        parser.error("a multi-process run needs --coordinator, --num-processes and --process-id "
                     "(or --distributed, to take them from the cluster environment)")
    if None not in (args.num_processes, args.process_id) and args.process_id >= args.num_processes:
        parser.error(f"--process-id must be below --num-processes ({args.num_processes}), "
                     f"got {args.process_id}")
    try:
        return join(*wanted, heartbeat_timeout=args.heartbeat_timeout, connect_timeout=args.connect_timeout,
                    reword=as_flags)
    except DistributedError as e:
        fail(as_flags(e))


def _check_processes_agree(args, settings, data):
    from backprop_jax.training import DistributedError, check_processes_agree

    try:
        check_processes_agree({"settings": settings, "dataset": data.name, "resume": args.resume,
                               "checkpoint": [args.checkpoint_every, args.checkpoint_interval]}, data.arrays)
    except DistributedError as e:
        fail(e)


def _exit_past_leftovers(message):
    """Exits with ``message`` after a failed checkpoint write. The run has already closed its
    files; orbax's writes still in flight would print a traceback each from their callbacks as
    the interpreter shuts down, so the process ends here, without that shutdown."""
    sys.stderr.write(message + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _stop_cleanly_on_signals(args):
    """Returns ``stop`` for ``run``: from now on the first SIGINT (Ctrl-C) or SIGTERM asks the run to
    stop after its current compiled call, saving the iteration reached. If the run does not take
    the request within ``GRACE_S`` seconds (it is compiling, or in one long compiled call), the
    process ends then, its complete checkpoints kept; a second signal ends it at once."""
    from backprop_jax.cli._signals import GRACE_S, current

    def last_words(name):
        bar = "" if args.no_progress else "\n"  # off the progress bar's line
        return (f"{bar}backprop-jax: stopped by {name} without waiting for the run's compiled call (it did not "
                f"return within {GRACE_S:g} s); {_kept(args.out)}")

    signals = current()
    signals.request_mode(last_words)
    return signals.requested


def _kept(out):
    """What a run stopped from outside its loop leaves: its newest complete checkpoint, in words."""
    if not out:
        return "nothing was saved (no --out)"
    folder = os.path.join(out, "checkpoints")
    try:
        steps = [int(name) for name in os.listdir(folder) if name.isdigit()]  # complete ones: renamed when whole
    except OSError:
        steps = []
    if not steps:
        return f"no checkpoint had been written in {out}"
    return f"the last checkpoint is iteration {max(steps)}; resume with --resume --out {out}"
