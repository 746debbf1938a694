"""Layout checks of a drawn matplotlib Figure: every label inside the canvas, none over another panel or label."""

from matplotlib.backends.backend_agg import FigureCanvasAgg


def _texts(ax):
    out = [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
    for axis in (ax.xaxis, ax.yaxis):  # the ticks drawn (inside the view), not every located one
        out += [label for tick in axis._update_ticks() for label in (tick.label1, tick.label2)]
    if ax.get_legend() is not None:
        out += ax.get_legend().get_texts()
    return [t for t in out if t.get_visible() and t.get_text().strip()]


def layout_problems(fig) -> list[str]:
    """Texts cut by the canvas edge, over another axes' area, or over a text of another axes ([]: none)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    page = fig.bbox
    boxes = [(ax, t, t.get_window_extent(renderer)) for ax in fig.axes for t in _texts(ax)]
    boxes += [(None, t, t.get_window_extent(renderer)) for t in fig.texts if t.get_text().strip()]
    problems = []
    for ax, t, b in boxes:
        if b.x0 < page.x0 or b.y0 < page.y0 or b.x1 > page.x1 or b.y1 > page.y1:
            problems.append(f"{t.get_text()!r} is cut by the edge of the figure")
        for other in fig.axes:
            if other is not ax and b.overlaps(other.bbox):
                problems.append(f"{t.get_text()!r} lies over another panel")
    for i, (ax, t, b) in enumerate(boxes):
        for ax2, t2, b2 in boxes[i + 1 :]:
            if ax is not ax2 and b.overlaps(b2):  # (the boxes of rotated tick labels of one axis overlap)
                problems.append(f"{t.get_text()!r} overlaps {t2.get_text()!r}")
    return problems
