"""Pages generated from live code when the site is built (``mkdocs.yml``'s ``hooks``).

- ``<!-- cli-reference -->`` becomes the command line's reference, read from the argparse
  parser the command itself uses, so it cannot drift from ``--help``.
- ``<!-- benchmark: NAME -->`` becomes the tables of ``benchmarks/results/NAME.json``,
  headed by the machine, the versions and the date they were measured.
- ``<!-- device-checks -->`` becomes the tables of every device check recorded in
  ``benchmarks/results/`` (the JSON ``benchmarks/device_check.sh`` writes), or says there is none.
- The build fails if a name of ``backprop_jax.__all__`` has no ``::: backprop_jax.NAME``
  entry in the reference, or has no docstring.
- MathJax comes from the ``mathjax`` package (PyPI's ``django-static-mathjax``) and is
  served by the site itself; the notebook pages lose the script tags that would fetch
  MathJax 2 and Mermaid from another host.
- A translation (``page.zh.md``, ``page.ja.md``, or a notebook ``name.zh.ipynb``) records the
  SHA-256 of the English file it was translated from (``source_sha256`` in its front matter
  or its notebook metadata ``translation``). Where the English file has changed since, the
  page opens with a notice in its own language and a link to the English page;
  ``stale_translations()`` lists them (the suite fails on any).
- ``BACKPROP_JAX_DOCS_EXECUTE`` says which notebooks run while the site builds: ``true``
  (all, the default), ``false`` (none: their committed sources are shown), or a list of
  notebook file names separated by commas.
"""

import argparse
import hashlib
import importlib.resources
import inspect
import json
import os
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NOTEBOOKS = ROOT / "notebooks"
MATHJAX = "assets/mathjax/tex-svg.js"  # the one bundle the site serves (mkdocs.yml's extra_javascript)
_documented = set()


def on_config(config):
    jupyter = config.plugins["mkdocs-jupyter"]
    which = os.environ.get("BACKPROP_JAX_DOCS_EXECUTE", "true").strip()
    if which.lower() in ("true", "false"):
        jupyter.config["execute"] = which.lower() == "true"
    else:
        names = {name.strip() for name in which.split(",") if name.strip()}
        known = {path.name for path in NOTEBOOKS.glob("*.ipynb")}
        if not names <= known:
            raise PluginError(f"BACKPROP_JAX_DOCS_EXECUTE names notebooks that do not exist: "
                              f"{', '.join(sorted(names - known))} (there are {', '.join(sorted(known))})")
        jupyter.config["execute"] = True
        jupyter.config["execute_ignore"] = [f"*/{name}" for name in sorted(known - names)]
    return config


class _NotebookPage(File):
    """A notebook the i18n plugin placed (``zh/notebooks/...``): still a page for mkdocs-jupyter."""

    def is_documentation_page(self):
        return True


@event_priority(-200)  # after the i18n plugin has placed each language's files
def on_files(files, config):
    bundle = importlib.resources.files("mathjax") / "static" / "mathjax" / "es5" / "tex-svg.js"
    files.append(File.generated(config, MATHJAX, abs_src_path=str(bundle)))
    for file in files:
        if file.src_uri.endswith(".ipynb") and type(file) is File:
            file.__class__ = _NotebookPage
    return files


# What nbconvert puts at the top of a notebook: MathJax 2 from a CDN (with an empty src when
# no address is given) with its configuration, and a module that imports Mermaid from a CDN.
_NOTEBOOK_SCRIPTS = re.compile(
    r'<script src="[^"]*">\s*</script>\s*<!-- MathJax configuration -->.*?<!-- End of mathjax configuration -->'
    r'|<script type="module">(?:(?!</script>).)*?import\("https://[^"]*mermaid.*?</script>', re.S)


def on_page_content(html, page, config, files):
    if page.file.src_uri.endswith(".ipynb"):
        html = _NOTEBOOK_SCRIPTS.sub("", html)
        recorded = _notebook_translation(ROOT / "docs" / page.file.src_uri).get("source_sha256")
        if recorded:
            html = _stale_notice(page.file.src_uri, recorded) + html
    return html


# Translations ------------------------------------------------------------------------------

@event_priority(-200)  # after the i18n plugin has set this page's language switcher
def on_page_context(context, page, config, nav):
    """The language switcher of a notebook leads to the same notebook in each language (the
    i18n plugin sees notebooks as assets and would send a reader to the home page), and no
    link of the switcher is absolute (the site may be served below a path, or from disk)."""
    # The i18n plugin sets config.extra.alternate as an attribute, which the theme reads.
    alternates = getattr(config.extra, "alternate", None) or []
    if page.file.src_uri.endswith(".ipynb"):
        stem = re.sub(r"(\.(%s))?\.ipynb$" % "|".join(LANGUAGES), "", page.file.src_uri)
        for alternate in alternates:
            lang = alternate["lang"]
            translated = lang in LANGUAGES and (ROOT / "docs" / f"{stem}.{lang}.ipynb").exists()
            alternate["link"] = (f"{lang}/" if translated else "") + f"{stem}.html"
    for alternate in alternates:
        alternate["link"] = alternate["link"].lstrip("/")
    return context


LANGUAGES = ("zh", "ja")
_STALE = {  # (title, text) of the notice on a stale translation
    "zh": ("译文可能已过时", "英文原文在此译文写成之后有所更改。请参阅[英文原文]({link})。"),
    "ja": ("翻訳が古い可能性があります", "この翻訳の後に英語の原文が変更されました。[英語の原文]({link})を参照してください。"),
}


def source_of(translation):
    """``index.md`` for ``index.zh.md``: the English file a translation follows."""
    stem, lang, ext = translation.rsplit(".", 2)
    return f"{stem}.{ext}"


def file_sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _notebook_translation(path):
    if not any(str(path).endswith(f".{lang}.ipynb") for lang in LANGUAGES):
        return {}
    return json.loads(Path(path).read_text()).get("metadata", {}).get("translation", {})


def translations():
    """``{translation path: recorded SHA-256 of its English source}``, relative to docs/."""
    docs = ROOT / "docs"
    found = {}
    for lang in LANGUAGES:
        for path in sorted(docs.rglob(f"*.{lang}.md")):
            head = re.match(r"---\n(.*?)\n---\n", path.read_text(), re.S)
            recorded = re.search(r"^source_sha256:\s*(\w+)\s*$", head.group(1), re.M) if head else None
            found[str(path.relative_to(docs))] = recorded.group(1) if recorded else ""
        for path in sorted((docs / "notebooks").glob(f"*.{lang}.ipynb")):
            found[str(path.relative_to(docs))] = _notebook_translation(path).get("source_sha256", "")
    return found


def stale_translations():
    """The translations whose English source has changed since (or that record no hash)."""
    docs = ROOT / "docs"
    return sorted(t for t, recorded in translations().items()
                  if recorded != file_sha256(docs / source_of(t)))


def _stale_notice(src_uri, recorded):
    if recorded == file_sha256(ROOT / "docs" / source_of(src_uri)):
        return ""
    lang = src_uri.rsplit(".", 2)[1]
    depth = src_uri.count("/") + 1  # the English page is one level up, under the same path
    link = "../" * depth + source_of(src_uri).replace(".md", ".html").replace(".ipynb", ".html")
    title, text = _STALE[lang]
    text = text.format(link=link)
    # Raw HTML in both kinds of page: the link leaves this language's part of the site.
    text = re.sub(r"\[(.*?)\]\((.*?)\)", r'<a href="\2">\1</a>', text)
    return (f'<div class="admonition warning stale-translation"><p class="admonition-title">{title}</p>'
            f'<p>{text}</p></div>\n\n')


def on_page_markdown(markdown, page, config, files):
    if page.meta.get("source_sha256"):
        markdown = _stale_notice(page.file.src_uri, page.meta["source_sha256"]) + markdown
    _documented.update(re.findall(r"^::: backprop_jax\.(\w+)\s*$", markdown, re.M))
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", cli_reference())
    if "<!-- device-checks -->" in markdown:
        markdown = markdown.replace("<!-- device-checks -->", device_checks())
    return re.sub(r"<!-- benchmark: ([\w.-]+) -->", lambda m: benchmark_tables(m.group(1)), markdown)


def on_post_build(config):
    import backprop_jax

    missing = sorted(set(backprop_jax.__all__) - _documented)
    if missing:
        raise PluginError("public names with no entry in docs/reference/api.md: " + ", ".join(missing))
    undocumented = [name for name in backprop_jax.__all__
                    if not inspect.getdoc(getattr(backprop_jax, name))]
    if undocumented:
        raise PluginError("public names without a docstring: " + ", ".join(undocumented))


# The command line ----------------------------------------------------------------------

def _flag(action):
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    names = ", ".join(f"`{name}`" for name in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or (("{" + ",".join(map(str, action.choices)) + "}") if action.choices
                                 else action.dest.upper())
    return f"{names} `{metavar}`"


def _cell(text):
    return (text or "").replace("|", "\\|").replace("\n", " ")


def _help(action, parser):
    text = action.help or ""
    if "%(" in text:
        text = text % {**vars(action), "prog": parser.prog}
    if action.choices and not action.option_strings:
        text += " (" + ", ".join(f"`{c}`" for c in action.choices) + ")"
    return _cell(text)


def _arguments_table(parser):
    rows = ["| argument | meaning |", "|---|---|"]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        rows.append(f"| {_flag(action)} | {_help(action, parser)} |")
    return "\n".join(rows)


def cli_reference():
    from backprop_jax.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    parts = [f"```\n{parser.format_usage().strip()}\n```"]
    for name, command in sub.choices.items():
        parts.append(f"## `{name}`\n\n{_cell(helps.get(name, ''))}.\n")
        parts.append(f"```\n{command.format_usage().strip()}\n```\n")
        if command.description:
            parts.append(command.description + "\n")
        parts.append(_arguments_table(command))
        if command.epilog:
            parts.append("\n" + command.epilog)
    return "\n\n".join(parts)


# The benchmarks ------------------------------------------------------------------------

def _number(value, digits=2):
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def benchmark_tables(name):
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise PluginError(f"a page asks for benchmarks/results/{name}.json, which does not exist")
    result = json.loads(path.read_text())
    m = result["machine"]
    cores = f"{m['cpu_count']} CPU cores" if m.get("cpu_count") else "?"
    devices = ", ".join(m.get("devices", [])) or m.get("device_kind", "?")
    head = (f"**`{name}.json`**, measured {result.get('date', 'on an unrecorded date')} on "
            f"{m.get('platform', '?')} ({cores}; devices {devices}), Python {m.get('python')}, "
            f"JAX {m.get('jax')}, NumPy {m.get('numpy')}, PyTorch {m.get('torch') or 'absent'}; "
            f"medians of {result.get('repeats')} repeats.")
    parts = [head]
    if not result.get("workloads"):
        return "\n\n".join(parts + _end_to_end(result))
    columns = [c for c in ("hand", "autodiff", "plain", "numpy", "torch")
               if any(w["steps_per_s"].get(c) for w in result["workloads"].values())]
    rows = ["| workload | " + " | ".join(f"{c} steps/s" for c in columns) + " | hand/autodiff | hand, % of peak |",
            "|---|" + "---|" * (len(columns) + 2)]
    for label, w in result["workloads"].items():
        s = w["steps_per_s"]
        rows.append(f"| {label}, batch {w['batch']} | " + " | ".join(_number(s.get(c)) for c in columns)
                    + f" | {_number(s['hand'] / s['autodiff'])} | {100 * w['peak_fraction']['hand']:.1f}% |")
    parts.append("\n".join(rows))
    peak = result["gemm_peak_gflops"]
    parts.append(f"Float32 matmul peak {peak:.0f} GFLOP/s; peak memory of the process "
                 f"{result.get('peak_rss_mb', 0):.0f} MB.")
    ratios = [w["hand"] / w["autodiff"]
              for sweep in result.get("sweeps", {}).values() for w in sweep]
    if ratios:
        parts.append(f"Across the batch and hidden-size sweeps hand/autodiff is "
                     f"{min(ratios):.2f}-{max(ratios):.2f}.")
    conv = result.get("convolution")
    if conv:
        parts.append(f"Convolution forward and backward (x {conv['x_shape']}, W {conv['W_shape']}): "
                     f"{conv['im2col_ms']:.2f} ms through `im2col`, "
                     + (f"{conv['xla_ms']:.2f} ms through `convolution_xla`, " if "xla_ms" in conv else "")
                     + f"{conv['lax_conv_ms']:.2f} ms through autodiff of `lax.conv_general_dilated`.")
    deep = result.get("deep_convnet")
    if deep:
        parts.append(f"Chapter 8's DeepConvNet, batch 100: {deep['hand']['steps_per_s']:.1f} steps/s "
                     f"through the hand rules, {deep['autodiff']['steps_per_s']:.1f} through autodiff "
                     f"of the same forward.")
    return "\n\n".join(parts + _end_to_end(result))


def _end_to_end(result):
    parts = []
    lstm = result.get("time_lstm")
    if lstm:
        rows = ["The sequel's `time_lstm`, forward and backward (`value_and_grad`):", "",
                "| size | hand calls/s | autodiff calls/s | hand/autodiff | temporary memory, hand / autodiff (MB) "
                "| largest gradient difference (relative) |", "|---|---|---|---|---|---|"]
        for label, r in lstm.items():
            rows.append(f"| {label} | {r['hand']['steps_per_s']:.1f} | {r['autodiff']['steps_per_s']:.1f} | "
                        f"{r['hand_over_autodiff']:.2f} | {_number(r['hand']['temp_mb'], 1)} / "
                        f"{_number(r['autodiff']['temp_mb'], 1)} "
                        f"| {r['max_rel_grad_difference']:.1e} |")
        parts.append("\n".join(rows))
    e2e = result.get("end_to_end")
    if e2e:
        seconds, vs = e2e["seconds"], e2e.get("vs_plain", {})
        labels = {"plain": "independent plain-JAX program", "device": "device work alone",
                  "train": "`bj.train`", "run": "`bj.run` with an output directory (the call)",
                  "run_training": "`bj.run`, training time in `metrics.json`",
                  "cli_training": "`backprop-jax train --out`, training time in `metrics.json`",
                  "cli_training_and_compile": "`backprop-jax train --out`, training and compiling (or cache load)",
                  "cli": "`backprop-jax train --out`, wall clock",
                  "numpy": "the book's NumPy loop, float32",
                  "numpy_float64": "the book's NumPy loop, float64 (as the book)",
                  "torch": "PyTorch"}
        rows = [f"The whole recipe, {e2e['iters']} iterations in {e2e['epochs']} epochs:", "",
                "| way | seconds | fraction of the plain program's speed |", "|---|---|---|"]
        for key, label in labels.items():
            if seconds.get(key) is None:
                continue
            fraction = "1" if key == "plain" else _number(vs.get(key))
            rows.append(f"| {label} | {seconds[key]:.2f} | {fraction if 'plain' in seconds else '-'} |")
        parts.append("\n".join(rows))
        split = e2e.get("cli_split")
        if split:
            parts.append("The command's wall time in parts: " + ", ".join(
                f"{key.replace('_', ' ')} {value:.2f} s" for key, value in split.items()) + ".")
    return parts


# The device checks ---------------------------------------------------------------------

def device_checks():
    """Every device check in ``benchmarks/results/``, newest first, or a line saying there is none."""
    found = []
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        if result.get("kind") == "device-check":
            found.append((result.get("date", ""), path.stem, result))
    if not found:
        return ("No device check is recorded yet: `benchmarks/device_check.sh` has not been run on an "
                "accelerator since it was written (see [Development](../development.md)).")
    return "\n\n".join(_device_check(name, result) for _, name, result in sorted(found, reverse=True))


def _device_check(name, result):
    """One device check's tables; any stage may be missing (a run killed or out of time)."""
    machine = result.get("machine") or {}
    m = machine.get("machine") or {}
    install = result.get("install") or {}
    stages = ", ".join(f"{stage} {s['status']} ({s['seconds']:.0f} s)" for stage, s in result["stages"].items())
    parts = [f"**`{name}.json`**, measured {result.get('date')} on {m.get('device_kind', '?')} "
             f"({machine.get('backend', '?')}; devices {', '.join(m.get('devices', [])) or '?'}), "
             f"JAX {m.get('jax', '?')}, Python {m.get('python', '?')}"
             f"{' (tiny sizes: a check of the harness, not a measurement)' if result.get('tiny') else ''}. "
             f"Installed by {install.get('way', '?')} in {install.get('seconds', 0):.0f} s; "
             f"{result.get('elapsed_s', 0):.0f} s in all. Stages: {stages}."]
    peaks = machine.get("peak_gflops")
    if peaks:
        labels = {"float32": "float32", "float32_default": "float32 at JAX's default precision (TF32 on GPUs)",
                  "bfloat16": "bfloat16"}
        parts.append("Matmul peak: " + ", ".join(f"{labels.get(k, k)} {v:,.0f} GFLOP/s" for k, v in peaks.items())
                     + ".")
    tests = result.get("tests") or {}
    if tests.get("counts") is not None:
        failed = tests.get("failed") or []
        parts.append(f"The suite's device-relevant tests ({len(tests.get('files', []))} files, matmuls at "
                     f"{tests.get('matmul_precision')} precision): "
                     + (", ".join(f"{v} {k}" for k, v in sorted(tests["counts"].items())) or "none ran")
                     + (". Failed: " + ", ".join(f"`{f}`" for f in failed[:10]) if failed else "") + ".")
    steps = result.get("steps") or {}
    if steps.get("workloads"):
        rows = ["| workload | hand steps/s | autodiff steps/s | plain steps/s | hand/autodiff | hand/plain "
                "| hand GFLOP/s |", "|---|---|---|---|---|---|---|"]
        for label, w in steps["workloads"].items():
            s = w["steps_per_s"]
            rows.append(f"| {label}, batch {w['batch']} | {_number(s['hand'])} | {_number(s['autodiff'])} | "
                        f"{_number(s['plain'])} | {w['hand_over_autodiff']:.2f} | {w['hand_over_plain']:.2f} | "
                        f"{_number(w['hand_gflops'])} |")
        parts.append("\n".join(rows))
    mixed = steps.get("mixed_precision")
    if mixed:
        parts.append(f"{mixed['workload']}, hand rules computing in float32 and in bfloat16 "
                     f"(`mixed_precision`: float32 master weights and loss): " + ", ".join(
                         f"{k} {_number(v)} steps/s" for k, v in mixed["steps_per_s"].items()) + ".")
    conv = steps.get("convolution")
    if conv:
        parts.append(f"One convolution layer forward and backward (x {conv['x_shape']}, W {conv['W_shape']}): "
                     + ", ".join(f"{k.removesuffix('_ms')} {v:.3f} ms" for k, v in conv.items() if k.endswith("_ms"))
                     + " (`im2col`: the book's; `xla`: `convolution_xla`, its backward by hand; `lax_conv`: "
                       "autodiff of `lax.conv_general_dilated`).")
    deep = steps.get("deep_convnet")
    if deep:
        parts.append("DeepConvNet (chapter 8), training steps/s: " + ", ".join(
            f"{k.replace('_', ' ')} {v['steps_per_s']:.1f}" for k, v in deep.items()) + ".")
    e2e = result.get("end_to_end")
    parts += _end_to_end({"time_lstm": steps.get("time_lstm"),
                          "end_to_end": e2e if e2e and e2e.get("seconds") else None})
    train = result.get("train") or {}
    if train:
        rows = ["| command | wall s | training s | result |", "|---|---|---|---|"]
        for r in train.values():
            if r.get("returncode") != 0:
                rows.append(f"| `{r['command']}` | {r['wall_s']:.1f} | - | failed (exit {r.get('returncode')}) |")
                continue
            score = (f"test accuracy {r['test_acc']:.3f}" if r.get("test_perplexity") is None
                     else f"test perplexity {r['test_perplexity']:.1f}")
            rows.append(f"| `{r['command']}` | {r['wall_s']:.1f} | {r['training_s']:.1f} | {score}, "
                        f"{r['iterations']} iterations |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)
