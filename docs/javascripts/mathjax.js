// MathJax 3, served by the site (docs/hooks.py copies its bundle from the `mathjax` package).
// It typesets the guides' math (pymdownx.arithmatex writes it as \(...\)) and the
// notebooks' markdown cells ($...$ as Jupyter writes it), never code (pre and code are skipped)
// or a cell's outputs.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
  },
  options: {
    ignoreHtmlClass: "tex2jax_ignore|mathjax_ignore|jp-OutputArea|bj-graph",
  },
  svg: { fontCache: "global" },
};
