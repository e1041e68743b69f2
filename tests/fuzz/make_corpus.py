#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: tests/fuzz/corpus/*.bin for fuzz_bnorm.cpp (the
2-d API) and tests/fuzz/corpus_ranks/*.bin for fuzz_ranks.cpp (BatchNorm1d/3d, fold_into).

Each seed is a scenario spelled in its target's input format (the targets read bytes front to
back, zeros once the input ends): a header (type, num_features, eps, momentum, flags), then
steps. The seeds reach every path quickly; libFuzzer mutates them from there.

    python3 tests/fuzz/make_corpus.py        # rewrites both directories' seed-*.bin
"""
import pathlib

# Tables of fuzz_bnorm.cpp, by index.
FEATURES = [1, 2, 3, 4, 5, 7, 8, 16, 0, -1, 64]
EPS = ["1e-5", "0", "1e-3", "1", "1e-12", "1e-40", "1e30", "0.1", "-1e-5", "nan", "inf"]
MOMENTUM = ["0.1", "none", "0", "1", "0.5", "-0.1", "1.5", "nan"]
SPECIAL_EXTENTS = [0, 1, 2, 7, 17, 64, 1 << 31, (1 << 32) + 1, 1 << 40, 1 << 62, (1 << 63) - 1,
                   -1, -7, -(1 << 63)]
NCHW, NHWC, PERMUTED, RAW, BROADCAST, WILD = range(6)
FORWARD, TRAIN, PARAMETERS, BACKWARD, FREE, VIEWS = 0, 3, 4, 5, 6, 7
OWN, ALIAS, SHIFT_OWN_LAYOUT, SHIFT_SAME_STRIDES, SHIFT_FAR = 0, 5, 4, 6, 7


def extent(v):
    if 0 <= v <= 5:
        return [v]
    i = SPECIAL_EXTENTS.index(v)
    return [200 + (i - 200) % len(SPECIAL_EXTENTS)]


def header(dtype, features=3, eps="1e-5", momentum="0.1", affine=True, track=True):
    return [1 if dtype == "double" else 0, FEATURES.index(features), EPS.index(eps),
            MOMENTUM.index(momentum), (0 if affine else 1) | (0 if track else 2)]


def shape(n, h, w, c=None):
    """Channels = num_features unless c is given."""
    if c is None:
        return [1] + extent(n) + extent(h) + extent(w)
    return [0] + extent(n) + extent(c) + extent(h) + extent(w)


def form(kind, args=()):
    return [kind] + list(args)


def values(seed, regime=0, special=0):
    return list(seed.to_bytes(4, "big")) + [regime, special]


def output(how=OWN, which=0, layout=form(NCHW), shift=0, far=0, grow=0, room=0):
    """place_output: mutate byte, then how, which input, and the placement's own bytes (room:
    elements left behind an output in its own buffer, for outputs placed inside it)."""
    out = [grow, how, which]
    if how == ALIAS:
        return out
    if how in (SHIFT_SAME_STRIDES, SHIFT_FAR):
        return out + [shift] + ([far] if how == SHIFT_FAR else [])
    out += layout
    return out + ([shift] if how == SHIFT_OWN_LAYOUT else [room])


def forward(shp, x_layout=form(NCHW), y=output(), data=values(1), backward=None):
    step = [FORWARD] + shp + x_layout + y + data
    if backward is None:
        return step + [0]
    return step + [1] + backward


def backward(dy_layout=form(NCHW), data=values(2), dx=output(), grow=0, dy_in_y=False):
    return [grow] + ([7] if dy_in_y else [0] + dy_layout) + data + dx


def train(on):
    return [TRAIN, 1 if on else 0]


def parameters(which, seed, size=None, special=0):
    what = which | (4 if size is not None else 0)
    return [PARAMETERS, what] + ([size] if size is not None else []) + \
        list(seed.to_bytes(4, "big")) + [special]


def free(shp, x_layout=form(NCHW), y=output(), data=values(3), sizes=0, eps_index=0,
         training=True, then_backward=None):
    step = [FREE, 0] + shp + x_layout + y + data + [sizes]
    for seed in (11, 12, 13, 14):
        step += list(seed.to_bytes(4, "big")) + [0]
    step += [eps_index, 1 if training else 0]
    if then_backward is None:
        return step + [1]
    return step + [0] + then_backward


def free_backward(dy_layout=form(NCHW), data=values(4), dx=output(), grow=0):
    return [grow] + dy_layout + data + dx


def views(e, layout):
    return [VIEWS] + sum((extent(v) for v in e), []) + layout


# Op 8 (fuzz_activation.hpp): modules with an activation, the free functions with one, and
# fused::relu_backward.
ACTIVATION = 8
A_MODULE, A_FREE, A_RELU_BACKWARD = 0, 2, 3
RELU, NONE = 0, 3  # the activation, in the low bits of the step's flags
R_OWN, R_IS_X, R_SHIFTED = 0, 1, 2  # a residual: in its own buffer, exactly x, shifted in x's


def residual(how=R_OWN, shift=1, layout=form(NCHW), grow=0):
    if how == R_IS_X:
        return [R_IS_X]
    if how == R_SHIFTED:
        return [R_SHIFTED, shift - 1]
    return [R_OWN, grow] + layout


def act_module(shp, act=RELU, res=None, x_layout=form(NCHW), y=output(), data=values(41),
               res_data=values(42), backwards=()):
    """y: placed among x and the residual (which=1). backwards: act_backward()s, at most two."""
    step = [ACTIVATION, A_MODULE, act | (4 if res is not None else 0)] + shp + x_layout
    step += (res or []) + y + (res_data if res is not None else []) + data + [len(backwards)]
    return step + sum(backwards, [])


def act_backward(dy_layout=form(NCHW), data=values(43), dx=output(), dres=None,
                 new_weight=None, dy_in_y=False, grow=0):
    """dx: placed among dy, x, y (which 0-2); dres among dy, dx, x, y (which 0-3)."""
    flags = (1 if new_weight is not None else 0) | (0x1C if dy_in_y else 0)
    step = [flags | (0x20 if dres is not None else 0)]
    if new_weight is not None:
        step += list(new_weight.to_bytes(4, "big")) + [0]
    return step + [grow] + ([] if dy_in_y else dy_layout) + data + dx + (dres or [])


def act_free(shp, act=RELU, res=None, training=True, y=output(), sizes=0, eps_index=0,
             backward=None):
    """backward: act_free_backward(), or None for none."""
    flags = act | (4 if res is not None else 0) | (0 if training else 8)
    flags |= 16 if backward is None else 0
    step = [ACTIVATION, A_FREE, flags, 0] + shp + form(NCHW) + (res or []) + y
    step += (values(44) if res is not None else []) + values(45) + [sizes]
    for seed in (46, 47, 48, 49):
        step += list(seed.to_bytes(4, "big")) + [0]
    return step + [eps_index] + (backward or [])


def act_free_backward(dx=output(), dres=None, relu_how=0, no_res_dres=False):
    """dx among dy, x, y; dres among dy, dx. relu_how 6: wrong sizes, 7: dweight is relu.weight.
    no_res_dres: a dresidual after a forward without a residual."""
    b = relu_how << 3 | (1 if dres is not None else 0) | (7 if no_res_dres else 0)
    return [b, 0] + form(NCHW) + values(50) + dx + (dres or [])


def act_relu_backward(shp, dy_how=R_OWN, shift=1, g=output(), grow=0):
    """dy: R_OWN (its own buffer), R_IS_X (exactly y), R_SHIFTED; g among y and dy."""
    step = [ACTIVATION, A_RELU_BACKWARD, 0] + shp + form(NCHW) + [dy_how]
    if dy_how == R_SHIFTED:
        step += [shift - 1]
    elif dy_how == R_OWN:
        step += [grow] + form(NCHW)
    return step + g + values(51) + values(52)


PERM_PADDED = form(PERMUTED, [1, 0, 1, 0, 1, 2, 0, 3])
SEEDS = {
    "train-eval-nchw-float": header("float") + forward(shape(2, 4, 5), backward=backward())
    + train(False) + forward(shape(2, 4, 5), backward=backward()),
    "train-eval-nhwc-double": header("double", features=4)
    + forward(shape(3, 3, 2), form(NHWC), output(layout=form(NHWC)), backward=backward(form(NHWC)))
    + train(False) + forward(shape(1, 1, 1), form(NHWC), backward=backward()),
    "in-place-forward-then-backward": header("float")
    + forward(shape(2, 3, 3), y=output(ALIAS), backward=backward())
    + train(False) + forward(shape(2, 3, 3), y=output(ALIAS)),
    "backward-in-place-dy": header("double")
    + forward(shape(2, 2, 3), backward=backward(dx=output(ALIAS, 0))),
    "backward-in-place-x": header("float", features=2)
    + forward(shape(3, 2, 2), backward=backward(dx=output(ALIAS, 1))),
    "interleaved-same-strides": header("double", features=2)
    + forward(shape(2, 1, 3), form(PERMUTED, [0, 0, 0, 1, 0, 0, 0, 0]),
              output(SHIFT_SAME_STRIDES, shift=1), backward=backward()),
    "partial-overlap": header("float")
    + forward(shape(2, 2, 2), y=output(SHIFT_SAME_STRIDES, shift=3))
    + forward(shape(2, 2, 2), y=output(SHIFT_OWN_LAYOUT, layout=form(NHWC), shift=1))
    + forward(shape(2, 2, 2), backward=backward(dx=output(SHIFT_SAME_STRIDES, 0, shift=2))),
    "zero-stride-output": header("double")
    + forward(shape(2, 2, 2), y=output(layout=form(BROADCAST, [1])))
    + forward(shape(1, 2, 2), y=output(layout=form(BROADCAST, [0])), backward=backward()),
    "broadcast-input": header("float", features=2)
    + forward(shape(3, 2, 4), form(BROADCAST, [0]), backward=backward(form(BROADCAST, [2]))),
    "raw-strides": header("double", features=2)
    + forward(shape(2, 2, 2), form(RAW, [5, 1, 2, 0]), output(layout=form(RAW, [8, 4, 2, 1])))
    + forward(shape(2, 2, 3), form(RAW, [0, 0, 0, 0]), output(layout=form(RAW, [7, 3, 1, 1]))),
    "permuted-padded": header("float", features=5)
    + forward(shape(2, 3, 4), PERM_PADDED, output(layout=PERM_PADDED),
              backward=backward(PERM_PADDED, dx=output(layout=PERM_PADDED))),
    "huge-extents": header("float") + views([1 << 40, 0, 1 << 40, 1], form(NCHW))
    + views([(1 << 63) - 1, 1, 1, 2], form(NHWC)) + views([2, 3, 4, 5], form(WILD, [6, 7, 9, 10]))
    + views([-1, 3, 2, 2], form(NCHW)) + views([2, 2, 2, 2], form(WILD, [0, 1, 0, 9]))
    + forward(shape(0, 1 << 40, 3)) + forward(shape(2, 2, 2, c=1 << 31)),
    "nan-inf-data": header("double") + forward(shape(2, 3, 2), data=values(5, 3, 255),
                                               backward=backward(data=values(6, 0, 240)))
    + train(False) + forward(shape(2, 3, 2), data=values(7, 3, 230), backward=backward()),
    "large-offsets": header("float", features=4)
    + forward(shape(4, 5, 5), data=values(8, 2), backward=backward())
    + forward(shape(4, 5, 5), data=values(9, 2), backward=backward()),
    "constant-channels-eps0": header("double", eps="0")
    + forward(shape(2, 2, 2), data=values(10, 3), backward=backward())
    + forward(shape(2, 2, 2), data=values(11, 5), backward=backward()),
    "cumulative-untracked": header("float", momentum="none")
    + forward(shape(2, 2, 2), data=values(12, 1)) + forward(shape(2, 2, 2), data=values(13, 1))
    + forward(shape(2, 2, 2), data=values(14, 1), backward=backward()),
    "no-affine-no-tracking": header("double", affine=False, track=False)
    + forward(shape(2, 3, 1), backward=backward()) + train(False)
    + forward(shape(1, 1, 1)) + forward(shape(2, 1, 2), backward=backward()),
    "wrong-sizes-then-fixed": header("float")
    + parameters(0, 21, size=2) + forward(shape(2, 2, 2)) + parameters(0, 22)
    + parameters(3, 23, size=5) + train(False) + forward(shape(2, 2, 2)) + parameters(3, 24)
    + forward(shape(2, 2, 2), backward=backward()),
    "stale-backward-new-weight": header("double")
    + forward(shape(2, 3, 2)) + parameters(0, 31) + parameters(1, 32) + [BACKWARD]
    + backward() + train(False) + forward(shape(2, 3, 2)) + parameters(0, 33) + [BACKWARD]
    + backward(),
    "free-functions": header("float")
    + free(shape(2, 3, 2, c=3), then_backward=free_backward(dx=output(ALIAS, 1)))
    + free(shape(2, 3, 2, c=3), training=False)
    + free(shape(2, 2, 2, c=2), sizes=0x11, eps_index=3)
    + free(shape(1, 1, 1, c=2))
    + free(shape(2, 2, 3, c=2), then_backward=free_backward(dx=output(SHIFT_SAME_STRIDES, 0, 1))),
    "one-value-per-channel": header("double", features=2)
    + forward(shape(1, 1, 1)) + train(False) + forward(shape(1, 1, 1), backward=backward()),
    "bad-options": header("float", eps="nan"),
    "bad-momentum": header("double", momentum="1.5"),
    "shape-mismatch": header("float")
    + forward(shape(2, 2, 2), y=output(grow=230)) + forward(shape(2, 2, 2, c=4))
    + forward(shape(2, 2, 2), backward=backward(grow=230))
    + forward(shape(2, 2, 2), backward=backward(dx=output(grow=240))),
    "dy-in-forward-y": header("double")
    + forward(shape(2, 2, 3), backward=backward(dy_in_y=True, dx=output(ALIAS, 0))),
    "act-relu-train-eval": header("float")
    + act_module(shape(2, 3, 3), backwards=[act_backward(), act_backward(new_weight=53)])
    + train(False) + act_module(shape(2, 3, 3), backwards=[act_backward(dx=output(ALIAS, 1))]),
    "act-residual-relu-nhwc": header("double", features=4)
    + act_module(shape(2, 3, 2), res=residual(layout=form(NHWC)), x_layout=form(NHWC),
                 y=output(layout=form(NHWC)),
                 backwards=[act_backward(form(NHWC), dres=output()),
                            act_backward(dx=output(ALIAS, 2), dres=output(ALIAS, 0))])
    + train(False) + act_module(shape(2, 2, 2), res=residual(), backwards=[act_backward()]),
    "act-residual-in-place": header("float", features=2)
    + act_module(shape(2, 2, 3), res=residual(), y=output(ALIAS, 1),
                 backwards=[act_backward(dres=output()), act_backward(dx=output(ALIAS, 2))])
    + act_module(shape(2, 2, 3), res=residual(R_IS_X), backwards=[act_backward(dres=output())])
    + act_module(shape(2, 2, 3), res=residual(), y=output(ALIAS, 0), backwards=[act_backward()]),
    "act-residual-overlaps": header("double", features=2)
    + act_module(shape(2, 2, 3), res=residual(R_SHIFTED, shift=2), backwards=[act_backward()])
    + act_module(shape(2, 2, 3), res=residual(), y=output(SHIFT_SAME_STRIDES, 1, shift=1))
    + act_module(shape(2, 2, 3), res=residual(), y=output(SHIFT_OWN_LAYOUT, 1, shift=3))
    + act_module(shape(2, 1, 3), res=residual(layout=form(PERMUTED, [0, 0, 0, 1, 0, 0, 0, 0])),
                 y=output(SHIFT_SAME_STRIDES, 1, shift=1),
                 backwards=[act_backward(dx=output(SHIFT_SAME_STRIDES, 2, shift=1))])
    + act_module(shape(2, 2, 2), res=residual(grow=230)),
    "act-dresidual-aliases": header("float", features=2)
    + act_module(shape(2, 2, 2), res=residual(),
                 backwards=[act_backward(dres=output(ALIAS, 1)),
                            act_backward(dres=output(ALIAS, 2))])
    + act_module(shape(2, 2, 2), res=residual(),
                 backwards=[act_backward(dres=output(ALIAS, 3)),
                            act_backward(dres=output(SHIFT_SAME_STRIDES, 0, shift=2))])
    + act_module(shape(2, 2, 2), res=residual(), y=output(room=7),
                 backwards=[act_backward(dx=output(SHIFT_SAME_STRIDES, 2, shift=1)),
                            act_backward(dx=output(ALIAS, 0), dres=output(ALIAS, 0))])
    + act_module(shape(2, 2, 2), backwards=[act_backward(dres=output())]),
    "act-none-residual-dy-in-y": header("double", features=3)
    + act_module(shape(2, 2, 2), NONE, res=residual(),
                 backwards=[act_backward(dres=output(ALIAS, 0)), act_backward(dres=output())])
    + act_module(shape(2, 3, 1), backwards=[act_backward(dy_in_y=True, dx=output(ALIAS, 0))])
    + act_module(shape(3, 2, 2), NONE, backwards=[act_backward(dy_in_y=True)]),
    "act-nan-inf": header("float", features=3)
    + act_module(shape(2, 3, 3), res=residual(), data=values(54, 3, 240),
                 res_data=values(55, 0, 250), backwards=[act_backward(dres=output())])
    + train(False) + act_module(shape(2, 2, 3), data=values(56, 3, 255),
                                backwards=[act_backward(data=values(57, 0, 240))]),
    "act-free-functions": header("double")
    + act_free(shape(2, 3, 2, c=3), backward=act_free_backward())
    + act_free(shape(2, 3, 2, c=3), training=False, backward=act_free_backward(output(ALIAS, 0)))
    + act_free(shape(2, 2, 2, c=2), res=residual(),
               backward=act_free_backward(dres=output()))
    + act_free(shape(2, 2, 2, c=2), res=residual(), y=output(ALIAS, 1), training=False,
               backward=act_free_backward(dres=output(ALIAS, 0)))
    + act_free(shape(2, 2, 2, c=2), backward=act_free_backward(relu_how=6))
    + act_free(shape(2, 2, 2, c=2), backward=act_free_backward(relu_how=7))
    + act_free(shape(2, 2, 2, c=2), NONE, backward=act_free_backward(no_res_dres=True,
                                                                     dres=output()))
    + act_free(shape(1, 1, 1, c=2), sizes=0x11),
    "act-relu-backward": header("float")
    + act_relu_backward(shape(2, 3, 2, c=3))
    + act_relu_backward(shape(2, 3, 2, c=3), g=output(ALIAS, 1))
    + act_relu_backward(shape(2, 3, 2, c=3), R_IS_X, g=output(ALIAS, 0))
    + act_relu_backward(shape(2, 3, 2, c=3), R_SHIFTED, shift=3,
                        g=output(SHIFT_SAME_STRIDES, shift=1))
    + act_relu_backward(shape(2, 3, 2, c=3), g=output(SHIFT_SAME_STRIDES, 0, shift=1))
    + act_relu_backward(shape(2, 3, 2, c=3), grow=230),
}


# --- fuzz_ranks.cpp: tables and readers of its input, in the order the target reads ---------
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


def write(directory, seeds):
    out = pathlib.Path(__file__).resolve().parent / directory
    out.mkdir(exist_ok=True)
    for old in out.glob("seed-*.bin"):
        old.unlink()
    for i, (name, data) in enumerate(seeds.items()):
        assert all(0 <= b <= 255 for b in data), name
        (out / f"seed-{i:02d}-{name}.bin").write_bytes(bytes(data))
    print(f"wrote {len(seeds)} seeds to {out}")


def main():
    write("corpus", SEEDS)
    write("corpus_ranks", RANKS_SEEDS)


if __name__ == "__main__":
    main()
