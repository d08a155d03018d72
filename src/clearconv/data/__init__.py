"""Data: IDX files, MNIST, Fashion-MNIST, CIFAR-10, image folders, the X/O toy,
batching, normalisation and batch augmentation. NumPy only; Pillow (an optional
extra ``cli``) is imported when an image file is read.

Every loader returns a :class:`Dataset` (``images``, ``labels``,
``class_names``) that also unpacks as a 3-tuple. Data roots: an explicit
``root``, else ``$CLEARCONV_DATA``, else ``~/.cache/clearconv``; each data set has
its folder under it (``mnist/``, ``fashion-mnist/``, ``cifar10/``). Every
problem with files raises :class:`DataError` (a ``ValueError``) with a message
naming the file; :class:`DataMissingError` says which files to put where.
"""

from clearconv.data.augment import (
    Augment,
    random_affine,
    random_crop,
    random_flip,
    random_shift,
    shift_images,
)
from clearconv.data.cifar import CIFAR10_CLASSES, load_cifar10, safe_extract, verify_cifar10
from clearconv.data.download import (
    DataMissingError,
    FileSpec,
    default_data_root,
    download,
    resolve_root,
    verify_files,
)
from clearconv.data.folder import (
    IMAGE_EXTENSIONS,
    MissingDependencyError,
    image_folder_split,
    load_image,
    load_image_folder,
    read_images,
)
from clearconv.data.idx import DataError, read_idx, write_idx
from clearconv.data.loader import Dataset, iterate_batches, stratified_split, train_val_split
from clearconv.data.mnist import (
    FASHION_CLASSES,
    MNIST_CLASSES,
    load_fashion_mnist,
    load_mnist,
    verify_mnist,
)
from clearconv.data.transforms import channel_stats, mnist_preprocess, normalize, to_float
from clearconv.data.xo import XO_CLASSES, make_xo, xo_canonical

__all__ = [
    "CIFAR10_CLASSES",
    "FASHION_CLASSES",
    "IMAGE_EXTENSIONS",
    "MNIST_CLASSES",
    "XO_CLASSES",
    "Augment",
    "DataError",
    "DataMissingError",
    "Dataset",
    "FileSpec",
    "MissingDependencyError",
    "channel_stats",
    "default_data_root",
    "download",
    "image_folder_split",
    "iterate_batches",
    "load_cifar10",
    "load_fashion_mnist",
    "load_image",
    "load_image_folder",
    "load_mnist",
    "make_xo",
    "mnist_preprocess",
    "normalize",
    "random_affine",
    "random_crop",
    "random_flip",
    "random_shift",
    "read_idx",
    "read_images",
    "resolve_root",
    "safe_extract",
    "shift_images",
    "stratified_split",
    "to_float",
    "train_val_split",
    "verify_cifar10",
    "verify_files",
    "verify_mnist",
    "write_idx",
    "xo_canonical",
]
