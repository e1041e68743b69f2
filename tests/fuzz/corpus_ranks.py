"""The seeds of fuzz_ranks.cpp (BatchNorm1d/3d, their free functions, fold_into): its input's
tables and readers, in the order the target reads, and the scenarios (RANKS_SEEDS).
make_corpus.py writes them."""
from corpus_2d import NONE, RELU  # the same activation codes in both targets

R_FEATURES = [1, 2, 3, 4, 5, 8, 17, 0, -1]
R_MOMENTUM = ["0.1", "none", "0", "1", "-0.5", "1.5"]
R_EPS = ["1e-5", "1e-3", "0", "1", "-1", "nan"]
R_MODULE, R_FREE, R_TRAIN, R_PARAMETER, R_FOLD = range(5)
CONTIGUOUS, CHANNELS_LAST, CROPPED, RAW = range(4)
R_OWN, R_OWN_INSIDE, R_IN_PLACE, R_SHIFTED = 0, 4, 5, 6  # output placements
WEIGHT, BIAS, RUNNING_MEAN, RUNNING_VAR = range(4)


def r_header(dtype="float", rank=3, isa=0, features=3, momentum="0.1", eps="1e-5", affine=True,
             track=True):
    head = (1 if dtype == "double" else 0) | (2 if rank == 5 else 0) | isa << 2
    return [head, R_FEATURES.index(features), R_MOMENTUM.index(momentum),
            (0 if affine else 1) | (0 if track else 2), R_EPS.index(eps)]


def r_extents(n, spatial, c=None, nc=False):
    """N and the spatial extents; C is the call's unless c is given. nc: BatchNorm1d's (N, C)."""
    flags = (0 if c is not None else 1) | (0x18 if nc else 0)
    return [flags, n, 0] + list(spatial) + ([c] if c is not None else [])


def r_layout(form=CONTIGUOUS, pad=1, strides=()):
    return [form] + ([pad - 1] if form == CROPPED else []) + (list(strides) if form == RAW else [])


def r_input(layout=None):
    return [0] + (layout or r_layout())


def r_output(how=R_OWN, which=0, shift=1, layout=None, grow=0):
    """which: the input it is placed by (0: x or dy, 1: x for dx); grow >= 232: a mismatch."""
    out = [grow, how, which, shift - 1]
    return out if how in (R_IN_PLACE, R_SHIFTED) else out + (layout or r_layout())


def r_values(seed, regime=0):
    return [seed >> 8 & 255, seed & 255, regime]


def r_backward(dy=None, dx=None, data=None, grow=0):
    return [grow] + r_input(dy) + (data or r_values(2)) + (dx or r_output())


def r_call(extents, x=None, y=None, data=None, backward=None, free=None):
    """free: None for the modules, else (channels, sizes, eps, batch) of the free functions."""
    step = [R_FREE, free[0] - 1] if free else [R_MODULE]
    step += extents + r_input(x) + (y or r_output()) + (data or r_values(1))
    step += [free[1] if free else 0, 1 if backward else 0]
    if free:
        step += [0, 11, 0, 12, 0, 13, 0, 14, R_EPS.index(free[2]), 1 if free[3] else 0]
    return step + (backward or [])


def r_fold(affine=True, track=True, eps=True, rows=None, cols=3, bias="C", pad=0, wrong=0, c=3):
    kind = {"none": 0, "C": 1, "other": 2}[bias]
    f = (0 if affine else 1) | (0 if track else 2) | (4 if eps else 0)
    f |= 8 if rows is not None else 0
    step = [R_FOLD, f | kind << 4 | pad << 6, wrong, c - 1, 0, 21, 0, 22, 0, 23, 0, 24]
    step += ([rows] if rows is not None else []) + [cols] + ([4] if kind == 2 else [])
    return step + [0, 25, 0, 26]


# Op 6 (ranks_activation.hpp): modules with an activation, and fused::relu_backward.
R_ACTIVATION = 6


def r_residual(how=R_OWN, shift=1, layout=None, grow=0):
    """R_OWN: a buffer of its own; 1: exactly x; 2: x's strides shifted in x's buffer."""
    if how == 1:
        return [1]
    if how == 2:
        return [2, shift - 1]
    return [R_OWN, grow] + r_input(layout)


def r_act_module(extents, act=RELU, res=None, x=None, y=None, data=None, res_data=None,
                 backwards=()):
    """y: placed among x and the residual (which=1); backwards: at most two r_act_backward()."""
    step = [R_ACTIVATION, 1, act | (4 if res is not None else 0)] + extents + r_input(x)
    step += (res or []) + (y or r_output())
    step += (res_data or r_values(3)) if res is not None else []
    return step + (data or r_values(4)) + [len(backwards)] + sum(backwards, [])


def r_act_backward(dy=None, dx=None, dres=None, data=None, new_weight=None, dy_in_y=False,
                   grow=0):
    """dx among dy, x, y (which 0-2); dres among dy, dx, x, y (which 0-3)."""
    flags = (1 if new_weight is not None else 0) | (0x1C if dy_in_y else 0)
    step = [flags | (0x20 if dres is not None else 0)]
    step += [new_weight >> 8 & 255, new_weight & 255] if new_weight is not None else []
    step += [grow] + ([] if dy_in_y else r_input(dy)) + (data or r_values(5))
    return step + (dx or r_output()) + (dres or [])


def r_act_relu_backward(extents, dy_how=R_OWN, shift=1, g=None, grow=0, channels=3):
    """dy: in its own buffer, exactly y (1) or shifted in y's buffer (2); g among y and dy."""
    step = [R_ACTIVATION, 0, channels - 1] + extents + r_input() + [dy_how]
    if dy_how == 2:
        step += [shift - 1]
    elif dy_how == R_OWN:
        step += [grow] + r_input()
    return step + (g or r_output()) + r_values(6) + r_values(7)


NCDHW = (2, 3, 3)
RANKS_SEEDS = {
    "nc-train-eval-float": r_header() + r_call(r_extents(4, [1], nc=True), backward=r_backward())
    + [R_TRAIN, 0] + r_call(r_extents(3, [1], nc=True), backward=r_backward()),
    "ncl-channels-last-double": r_header("double", features=5)
    + r_call(r_extents(3, [6]), r_layout(CHANNELS_LAST), r_output(layout=r_layout(CHANNELS_LAST)),
             backward=r_backward(r_layout(CHANNELS_LAST))),
    "ncdhw-cropped-float": r_header(rank=5, features=2)
    + r_call(r_extents(2, NCDHW), r_layout(CROPPED), r_output(layout=r_layout(CROPPED, 2)),
             backward=r_backward(r_layout(CROPPED), r_output(layout=r_layout(CROPPED)))),
    "ncdhw-in-place-double": r_header("double", rank=5, isa=1, features=4)
    + r_call(r_extents(2, NCDHW), r_layout(CHANNELS_LAST), r_output(R_IN_PLACE),
             backward=r_backward()) + [R_TRAIN, 0]
    + r_call(r_extents(3, (3, 2, 1)), r_layout(CROPPED), r_output(R_IN_PLACE)),
    "backward-dx-is-dy-cropped": r_header(rank=5)
    + r_call(r_extents(2, NCDHW), backward=r_backward(r_layout(CROPPED), r_output(R_IN_PLACE))),
    "backward-dx-is-x": r_header("double", isa=2)
    + r_call(r_extents(3, [4]), backward=r_backward(dx=r_output(R_IN_PLACE, which=1))),
    "interleaved-and-overlapping": r_header(features=2)
    + r_call(r_extents(2, [2]), r_layout(CROPPED, 2), r_output(R_SHIFTED, shift=2),
             backward=r_backward(r_layout(CROPPED, 2), r_output(R_SHIFTED, shift=2)))
    + r_call(r_extents(2, [3]), y=r_output(R_SHIFTED, shift=3))
    + r_call(r_extents(2, [3]), y=r_output(R_OWN_INSIDE, shift=2, layout=r_layout(CHANNELS_LAST))),
    "raw-strides": r_header("double", rank=5, features=2)
    + r_call(r_extents(2, (2, 2, 2)), r_layout(RAW, strides=[0, 1, 2, 0, 3]),
             r_output(layout=r_layout(RAW, strides=[16, 8, 4, 2, 1])))
    + r_call(r_extents(2, (1, 2, 1)), y=r_output(layout=r_layout(RAW, strides=[4, 1, 0, 2, 0])),
             backward=r_backward(dx=r_output(layout=r_layout(RAW, strides=[4, 1, 7, 2, 5])))),
    "shape-and-channel-mismatch": r_header()
    + r_call(r_extents(2, [3]), y=r_output(grow=232 + 1))
    + r_call(r_extents(2, [3], c=4))
    + r_call(r_extents(2, [3]), backward=r_backward(grow=232 + 2))
    + r_call(r_extents(2, [3]), backward=r_backward(dx=r_output(grow=232))),
    "empty-huge-strides-ncdhw": r_header(rank=5)
    + r_call(r_extents(0, NCDHW), r_layout(RAW, strides=[241, 242, 240, 1, 1]),
             r_output(layout=r_layout(RAW, strides=[240, 1, 2, 1, 241])), backward=r_backward()),
    "empty-huge-strides-ncl": r_header("double")
    + r_call(r_extents(0, [3]), r_layout(RAW, strides=[242, 241, 240]),
             free=(3, 0, "1e-5", True), backward=r_backward(r_layout(RAW, strides=[240, 0, 242]))),
    "free-training-float": r_header(features=2)
    + r_call(r_extents(3, [5], c=3), free=(3, 0, "1e-5", True),
             backward=r_backward(dx=r_output(R_IN_PLACE))),
    "free-inference-double": r_header("double", rank=5)
    + r_call(r_extents(2, NCDHW, c=2), r_layout(CROPPED), free=(2, 0, "1e-3", False),
             backward=r_backward(r_layout(CHANNELS_LAST))),
    "free-no-affine-and-errors": r_header(rank=5)
    + r_call(r_extents(2, NCDHW, c=3), free=(3, 16, "0", True), backward=r_backward())
    + r_call(r_extents(2, [1, 2, 2], c=3), free=(3, 1 | 2 << 5, "1e-5", True))
    + r_call(r_extents(2, [1, 2, 2], c=3), free=(3, 4 | 1 << 5, "1e-5", False))
    + r_call(r_extents(2, [1, 2, 2], c=3), free=(3, 0, "nan", True))
    + r_call(r_extents(1, [1, 1, 1], c=3), free=(3, 0, "1e-5", True)),
    "free-dx-overlaps-x": r_header(features=2)
    + r_call(r_extents(2, [4], c=2), free=(2, 0, "1e-5", True),
             backward=r_backward(dx=r_output(R_SHIFTED, which=1, shift=2))),
    "fold-valid": r_header() + r_fold() + r_fold(cols=4, pad=2, c=5)
    + r_fold(bias="none", affine=False, c=2) + r_fold(cols=0, eps=False),
    "fold-errors": r_header("double", rank=5) + r_fold(track=False) + r_fold(rows=2, c=3)
    + r_fold(bias="other") + r_fold(wrong=1 | 2 << 5) + r_fold(wrong=8 | 1 << 5),
    "wrong-parameter-then-fixed": r_header()
    + [R_PARAMETER, WEIGHT | 4, 2, 0, 31] + r_call(r_extents(2, [3]))
    + [R_PARAMETER, WEIGHT, 0, 0, 32] + [R_PARAMETER, RUNNING_VAR | 4, 1, 0, 33] + [R_TRAIN, 0]
    + r_call(r_extents(2, [3])) + [R_PARAMETER, RUNNING_VAR, 0, 0, 34]
    + r_call(r_extents(2, [3]), backward=r_backward()),
    "nan-and-inf": r_header("double", features=2)
    + r_call(r_extents(3, [3]), data=r_values(5, 0xF3),
             backward=r_backward(data=r_values(6, 0xF0))),
    "large-offsets-float": r_header(rank=5, features=3)
    + r_call(r_extents(4, NCDHW), data=r_values(7, 3), backward=r_backward())
    + r_call(r_extents(4, (3, 3, 3)), r_layout(CROPPED), data=r_values(8, 1),
             backward=r_backward()),
    "cumulative-untracked-eval": r_header(momentum="none", track=False)
    + r_call(r_extents(2, [2])) + r_call(r_extents(2, [2])) + [R_TRAIN, 0]
    + r_call(r_extents(2, [2]), backward=r_backward()),
    "no-affine-eps0-constant": r_header("double", affine=False, eps="0")
    + r_call(r_extents(3, [2]), data=r_values(9, 2), backward=r_backward()),
    "one-value-per-channel": r_header(features=2) + r_call(r_extents(1, [1]))
    + [R_TRAIN, 0] + r_call(r_extents(1, [1]), backward=r_backward()),
    "bad-options": r_header(eps="nan") + r_call(r_extents(2, [2])),
    "bad-momentum": r_header("double", rank=5, momentum="1.5"),
    "act-ncl-relu-residual": r_header(features=3)
    + r_act_module(r_extents(3, [4]), res=r_residual(),
                   backwards=[r_act_backward(dres=r_output()),
                              r_act_backward(new_weight=61, dx=r_output(R_IN_PLACE, which=2))])
    + [R_TRAIN, 0] + r_act_module(r_extents(2, [3]), backwards=[r_act_backward()])
    + r_act_module(r_extents(3, [1], nc=True), NONE,
                   res=r_residual(layout=r_layout(CHANNELS_LAST)),
                   backwards=[r_act_backward(dres=r_output(R_IN_PLACE))]),
    "act-ncdhw-cropped-double": r_header("double", rank=5, features=2)
    + r_act_module(r_extents(2, NCDHW), x=r_layout(CROPPED),
                   res=r_residual(layout=r_layout(CHANNELS_LAST)),
                   y=r_output(layout=r_layout(CROPPED, 2)),
                   backwards=[r_act_backward(r_layout(CROPPED), dres=r_output(R_IN_PLACE))])
    + r_act_module(r_extents(2, (2, 2, 2)), NONE, res=r_residual(1),
                   y=r_output(R_IN_PLACE, which=1), backwards=[r_act_backward()])
    + r_act_module(r_extents(2, (1, 2, 2)), data=r_values(8, 0xF3),
                   backwards=[r_act_backward(dy_in_y=True, dx=r_output(R_IN_PLACE, which=1))]),
    "act-overlaps-and-aliases": r_header(features=2, isa=1)
    + r_act_module(r_extents(2, [3]), res=r_residual(2, shift=2), y=r_output(R_SHIFTED, 1, 1))
    + r_act_module(r_extents(2, [3]), res=r_residual(2, shift=3),
                   backwards=[r_act_backward(dx=r_output(R_SHIFTED, which=1, shift=2))])
    + r_act_module(r_extents(2, [3]), res=r_residual(),
                   backwards=[r_act_backward(dres=r_output(R_IN_PLACE, which=1)),
                              r_act_backward(dres=r_output(R_IN_PLACE, which=2))])
    + r_act_module(r_extents(2, [3]), res=r_residual(),
                   backwards=[r_act_backward(dres=r_output(R_IN_PLACE, which=3)),
                              r_act_backward(dres=r_output(R_SHIFTED, which=0, shift=1))])
    + r_act_module(r_extents(2, [3]), backwards=[r_act_backward(dy_in_y=True),
                                                r_act_backward(dres=r_output())]),
    "act-relu-backward": r_header("double", rank=5)
    + r_act_relu_backward(r_extents(2, NCDHW))
    + r_act_relu_backward(r_extents(2, NCDHW), 1, g=r_output(R_IN_PLACE, which=0))
    + r_act_relu_backward(r_extents(2, (2, 2, 2)), 2, shift=2, g=r_output(R_IN_PLACE, which=1))
    + r_act_relu_backward(r_extents(2, (2, 2, 2)), g=r_output(R_SHIFTED, which=1, shift=1))
    + r_act_relu_backward(r_extents(2, (2, 2, 2)), grow=232 + 2),
}
