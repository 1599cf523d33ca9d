"""Contour boxes of a score map at every threshold at once, from its level-set structure.

[WSOL] (clovaai/wsolevaluation, rules in ``shared/specs/minmaxcam.md``) cuts the uint8 map ``s8``
at ``s8 > L`` for each integer level L and boxes the contours of ``cv2.findContours(RETR_TREE)``:
all of them for MaxBoxAccV2, the largest by ``cv2.contourArea`` for MaxBoxAcc. These contours are
known without tracing them (each fact is checked against cv2 in ``tests/test_level_sets.py``):

- there is one outer contour per 8-connected foreground component, whose bounding rectangle is
  the component's pixel box, and one hole contour per bounded 4-connected background component,
  whose rectangle is the hole's pixel box grown by one pixel on every side;
- ``contourArea`` of an outer contour is ``n4 + n3 / 2``, with n4 (n3) the 2 x 2 pixel quads of
  which all four (exactly three) pixels lie in the component with its holes filled;
- a hole's area never exceeds its parent's, and cv2 lists a parent before its holes, so the
  largest contour is the outer contour of the component with the largest filled area;
- no contour's area exceeds ``(x1 - x0)(y1 - y0)``, the box of its pixel centres.

Components, for all levels at once. Order the pixels strictly by (value of the float map ``u``,
flat index); ``s8`` is a non-decreasing function of ``u``, so every ``s8 > L`` is an upper set of
that order. Cut every row into segments that rise, then fall (split before each local minimum of
the row): in a segment each upper set is an interval. Hang each segment on the segment holding
the largest vertical 8-neighbour of its top pixel, when that neighbour is larger still. A tree of
segments then has connected upper sets at every level (a subtree's part at level L, when not
empty, holds the subtree's top pixel, whose larger neighbour lies in the parent's part), and
there is one tree, a *region*, per local maximum of ``u``. The components at level L are the
regions that reach above L, joined where two of them have 8-adjacent pixels both above L. Per
region, tables over the levels (box, quad counts) give each level's components in time
proportional to the number of regions, not of pixels.

Holes. A bounded 4-connected component of ``s8 <= L`` holds a 4-local minimum of ``u`` off the
border: its smallest pixel. A priority flood from each such minimum (4-connected, in order of the
largest value on the way) visits, up to flood level L, exactly that minimum's component at level
L; it stops on reaching the border (no longer a hole) or a smaller minimum (whose own flood
reports the merged hole from then on). Holes are small where maps are smooth, so the floods are
cheap.

The largest contour. A component's filled area lies between its own quad area and that plus
the quads around all holes, and never exceeds the box of its pixel centres. Most levels of
object-like maps are decided by the box bound alone (one component's quad area beats every
other's box), so MaxBoxAcc alone floods the holes only of maps where that fails. One case is
left to ``cv2.findContours``: levels where neither bound separates the largest component from
the others (equal quad areas, or holes too large). Those (image, level) pairs are flagged
``undecided``; maps with more than ``max_regions`` local maxima are not analysed at all (status
``TO_CV2``).

The contour rule is [WSOL]'s ``multi_contour``: the largest contour (False, MaxBoxAcc) or every
contour (True, MaxBoxAccV2); results are indexed by its value, ``LARGEST`` = 0 and ``ALL`` = 1.

numba caches each compiled function (``cache=True``) keyed on its own file only: after editing a
module here, delete the package's ``__pycache__/*.nbi`` and ``*.nbc`` files, or a caller in
another file keeps running the old code.

Modules: ``segments`` (row segments, regions), ``components``, ``holes``, ``image`` (one map's
IoUs from both), ``boxes`` (the box IoU), ``workspace`` (the named buffers), ``maps`` (score maps
from CAMs), ``batch`` (``analyse``: a batch on threads), ``compile_notice`` (says when numba
compiles).
"""

from callbacks.wsol.level_sets.batch import Analysis, analyse
from callbacks.wsol.level_sets.image import ALL, LARGEST, image_ious
from callbacks.wsol.level_sets.maps import NAN, OK, OUT_OF_RANGE, TO_CV2
from callbacks.wsol.level_sets.workspace import Workspace, workspace

__all__ = [
    "ALL",
    "LARGEST",
    "NAN",
    "OK",
    "OUT_OF_RANGE",
    "TO_CV2",
    "Analysis",
    "Workspace",
    "analyse",
    "image_ious",
    "workspace",
]
