"""``backprop-jax generate``: text from a trained language model, as the sequel's
``ch07/generate_text.py`` (``RnnlmGen``, ``BetterRnnlmGen``): a start word, words sampled one
after the other from the model's softmax, some never kept."""

from backprop_jax.cli._flags import fail, positive_int, seed
from backprop_jax.cli._trained import trained_run


def add_parser(sub):
    generate = sub.add_parser(
        "generate", help="text sampled from a trained rnnlm or better-rnnlm run, as the sequel's generate_text.py",
        description="Sample text from a trained language model (train --model rnnlm --out RUN_DIR): from "
                    "--start, each next word drawn from the softmax of the model's scores, the --skip words "
                    "never kept; <eos> printed as a full stop and a new line, as the sequel's script.")
    generate.add_argument("run", metavar="RUN_DIR", help="a train --out directory of rnnlm or better-rnnlm")
    generate.add_argument("--start", metavar="WORD", help="the first word (default: the text's first word)")
    generate.add_argument("--length", type=positive_int, default=100, metavar="N",
                          help="words to generate, the start word included (default 100, the sequel's sample_size)")
    generate.add_argument("--seed", type=seed, default=0, help="seed of the draws (default 0)")
    generate.add_argument("--skip", metavar="WORD", nargs="+", default=[],
                          help="words never generated, as the sequel's skip_words (it skips N '<unk>' '$'; "
                               "default: none)")
    generate.add_argument("--data", metavar="FILE.txt",
                          help="the text the run trained on, for its vocabulary (default: what the run recorded)")


def run(args, parser):
    import jax

    from backprop_jax.nets import generation
    from backprop_jax.training import DeviceOutOfMemory, out_of_memory_errors

    _, data, params = trained_run(args.run, args.data, parser, ("text",))
    text = data.source
    start = args.start if args.start is not None else text.id_to_word[int(text.train[0])]
    skip = args.skip
    unknown = [w for w in (start, *skip) if w not in text.word_to_id]
    if unknown:
        fail(f"{', '.join(map(repr, unknown))} not in the run's vocabulary ({len(text.word_to_id)} words)")
    try:
        with out_of_memory_errors("generation"):
            ids = generation.generate(params, text.word_to_id[start], key=jax.random.key(args.seed),
                                      sample_size=args.length, skip_ids=[text.word_to_id[w] for w in skip])
    except ValueError as e:  # a length past what the compiled loop counts
        fail(f"--length {args.length}: {e}" if "sample_size" in str(e) else str(e))
    except DeviceOutOfMemory as e:
        fail(f"{e}; give a smaller --length")
    print(text.decode(ids).replace(" <eos>", ".\n"))
