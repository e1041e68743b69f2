"""The seeds of fuzz_bnorm.cpp (the 2-d API): its input's tables and readers, in the order the
target reads, and the scenarios (SEEDS). make_corpus.py writes them."""

# Tables of fuzz_bnorm.cpp (session.hpp, view_oracle.hpp, fuzz_data.hpp), by index.
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

# The 16-bit part (float16_differential.hpp): its header and steps.
FEATURES16 = [1, 2, 3, 5, 16, 17, 33]
MODULE16, TRAIN16, PARAMETERS16, STAGED16 = 0, 2, 3, 4


def header16(dtype, features=3, flags=0, eps_index=0):
    """flags: 1 no affine, 2 no tracking, 4 ReLU, 8 cumulative average."""
    return [8 | (1 if dtype == "half" else 0), FEATURES16.index(features), flags, eps_index]


def shape16(n, h, w, nhwc=False, c=None):
    """Channels = num_features unless c is given."""
    b = (8 if nhwc else 0) | (0 if c is not None else 1)
    return [b, n - 1] + ([c - 1] if c is not None else []) + [h - 1, w - 1]


def module16(shp, data=values(61), res=None, dy=values(62)):
    return [MODULE16] + shp + data + ([1] + res if res else [0]) + dy


def staged16(shp, training=True, seed=63, special=0):
    arrays = [b for k in range(4) for b in list((seed + k).to_bytes(4, "big")) + [special]]
    return [STAGED16] + shp + [1 if training else 0] + arrays + values(seed) + values(seed + 1)

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
    "f16-bfloat16-train-eval": header16("bfloat16", features=16)
    + module16(shape16(2, 5, 5)) + module16(shape16(3, 4, 4, nhwc=True), data=values(64, 2))
    + [TRAIN16, 0] + module16(shape16(2, 3, 3)) + staged16(shape16(2, 3, 5))
    + staged16(shape16(2, 2, 2, nhwc=True), training=False),
    "f16-half-relu-residual": header16("half", features=5, flags=4)
    + module16(shape16(2, 3, 4), res=values(65)) + module16(shape16(4, 2, 2, nhwc=True))
    + [TRAIN16, 0] + module16(shape16(2, 3, 3), res=values(66)),
    "f16-half-specials-and-mismatches": header16("half", features=3, flags=8)
    + module16(shape16(2, 3, 3), data=values(67, 3, 250), dy=values(68, 0, 240))
    + module16(shape16(2, 3, 3, c=4)) + module16(shape16(1, 1, 1))
    + staged16(shape16(2, 2, 3), special=250) + staged16(shape16(3, 1, 1), training=False),
    "f16-bfloat16-wrong-sizes": header16("bfloat16", features=17, flags=2)
    + [PARAMETERS16, 12, 5] + list((70).to_bytes(4, "big")) + [0]
    + list((71).to_bytes(4, "big")) + [0] + module16(shape16(2, 2, 2))
    + [PARAMETERS16, 0] + list((72).to_bytes(4, "big")) + [0] + list((73).to_bytes(4, "big"))
    + [0] + module16(shape16(2, 2, 2, nhwc=True)) + staged16(shape16(2, 1, 3)),
}
