"""The viewer as a live notebook widget: picking a token in the page re-runs the masked LM in the kernel.

    show("runs/demo", "The cat sat on the mat.", live=True)

The page is the standalone one (`page.render_page`) in an iframe, inside an anywidget widget (JupyterLab, Notebook
7, VS Code, Colab). Its guesses are not precomputed: a pick posts {bertjaxPicked: {example, position}} to the
widget, which sets `picked`; the kernel runs `AttentionView.guesses` and sets `answer`, which the widget posts back
to the page (`setGuesses`). Needs the `notebook` extra (anywidget).
"""
from __future__ import annotations

import anywidget
import traitlets

from bertjax.errors import BertjaxError

ESM = """
function render({ model, el }) {
  const frame = document.createElement("iframe");
  frame.srcdoc = model.get("page");
  frame.title = "bertjax attention (live)";
  frame.style.cssText = `width: 100%; height: ${model.get("height")}px; border: 1px solid #ddd; border-radius: 4px`;
  el.appendChild(frame);
  const onMessage = (event) => {
    if (event.source !== frame.contentWindow || !event.data || !event.data.bertjaxPicked) return;
    model.set("picked", event.data.bertjaxPicked);
    model.save_changes();
  };
  const onAnswer = () => {
    const a = model.get("answer");
    frame.contentWindow.postMessage({ bertjaxView: "setGuesses", args: [a.position, a.guesses, a.example] }, "*");
  };
  window.addEventListener("message", onMessage);
  model.on("change:answer", onAnswer);
  return () => { window.removeEventListener("message", onMessage); model.off("change:answer", onAnswer); };
}
export default { render };
"""


class LiveAttentionView(anywidget.AnyWidget):
    """An `AttentionView` whose page asks the kernel for the masked-LM guesses of each token picked."""

    _esm = ESM
    page = traitlets.Unicode("").tag(sync=True)
    height = traitlets.Int(900).tag(sync=True)
    picked = traitlets.Dict({}).tag(sync=True)   # {example, position}: set by the page
    answer = traitlets.Dict({}).tag(sync=True)   # {example, position, guesses}: set by the kernel

    def __init__(self, view, height: int = 900):
        """`view`: an AttentionView (its precomputed guesses, if any, stay in the page)."""
        self.view = view
        super().__init__(page=view.html(live=True), height=height)

    @traitlets.observe("picked")
    def _answer_pick(self, change) -> None:
        example, position = int(change["new"]["example"]), int(change["new"]["position"])
        try:
            guesses = self.view.guesses(position, example)[position]
        except BertjaxError:
            guesses = []
        self.answer = {"example": example, "position": position, "guesses": guesses}
