"""See inside a network: filters, feature maps, saliency, Grad-CAM, training health, reports.

The functions return the arrays behind each picture (NumPy only); the pictures
are PNG (Pillow) and the plots use matplotlib (the ``viz`` extra), imported
only when a plot is drawn.
"""

from clearconv.viz._image import colorize, data_uri, mosaic, normalize01, png_bytes, save_png
from clearconv.viz.curves import (
    confusion_matrix,
    load_history,
    plot_confusion,
    plot_curves,
    plot_health,
    plot_mistakes,
    worst_mistakes,
)
from clearconv.viz.featuremaps import LayerOutput, feature_maps, stages, trace
from clearconv.viz.filters import conv_layers, filter_image, filter_tiles
from clearconv.viz.health import HealthMonitor, dead_relu_fraction, gradient_norms, layer_health
from clearconv.viz.inputs import ImageError, decode_image, prepare
from clearconv.viz.report import inspect_report, xo_report
from clearconv.viz.saliency import grad_cam, last_conv_stage, saliency, saliency_map, upsample
from clearconv.viz.xo import FEATURE_NAMES, train_xo, tutorial_net, walkthrough, xo_features

__all__ = [
    "FEATURE_NAMES",
    "HealthMonitor",
    "ImageError",
    "LayerOutput",
    "colorize",
    "confusion_matrix",
    "conv_layers",
    "data_uri",
    "dead_relu_fraction",
    "decode_image",
    "feature_maps",
    "filter_image",
    "filter_tiles",
    "grad_cam",
    "gradient_norms",
    "inspect_report",
    "last_conv_stage",
    "layer_health",
    "load_history",
    "mosaic",
    "normalize01",
    "plot_confusion",
    "plot_curves",
    "plot_health",
    "plot_mistakes",
    "png_bytes",
    "prepare",
    "saliency",
    "saliency_map",
    "save_png",
    "stages",
    "trace",
    "train_xo",
    "tutorial_net",
    "upsample",
    "walkthrough",
    "worst_mistakes",
    "xo_features",
    "xo_report",
]
