"""The person detectors' names, without importing torchvision (``--help`` lists them at once).

:mod:`dagnet_layers.inference.detect` builds them; :mod:`dagnet_layers.commands.args`
offers them on the command line.
"""

#: torchvision detection models that work as person detectors (COCO-trained), fastest first.
PERSON_DETECTORS: tuple[str, ...] = (
    "ssdlite320_mobilenet_v3_large",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
)

#: ``--detector auto``: the accurate detector on a GPU, the fast one on a CPU (on one
#: core of the CPU in benchmarks/results/predict_cpu-amd-epyc.md: 8.0 s against 0.86 s a
#: 640 x 480 frame).
AUTO_DETECTORS: dict[str, str] = {
    "cuda": "fasterrcnn_resnet50_fpn_v2", "cpu": "fasterrcnn_mobilenet_v3_large_fpn",
}
