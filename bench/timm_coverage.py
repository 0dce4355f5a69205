"""timm models through archsearch: trace, prune, build, cost (the torchvision survey's checks).

    python bench/timm_coverage.py [--models resnet18d,vit_tiny_patch16_224] [--resume]
                                  [--redo NAMES] [--threads 1]

For each model of `MODELS` (a varied set of small timm models; `family = "timm"`, random
init, 10 classes, at the small input size given there): trace the channel graph, fit a
50%FLOPs genome and draw a random one, shrink both, run forward + backward (train mode) and
forward (eval mode), and check the analytic cost against thop for the base and both genomes
(`bench/torchvision_coverage.py`'s `check`). Writes bench/results/timm_coverage.json and .md;
a model that fails is a row with the stage and the reason.
"""

from __future__ import annotations

import platform
import subprocess
import sys

from torchvision_coverage import RESULTS, check, survey, survey_args

# model -> input size: the smallest that keeps every stage's feature map >= 1 pixel (32 for
# the 32x-downsampling CNNs), larger where a model fixes or needs more (ViT/DeiT patches of
# 16, Swin's 7x7 windows over 4x4 patches, LeViT's and EfficientFormer's attention grids)
MODELS = {
    # ResNets and their variants
    "resnet10t": 32, "resnet18": 32, "resnet18d": 32, "resnet26t": 32, "seresnet18": 32,
    "resnext26ts": 32, "skresnet18": 32, "resnest14d": 32, "ecaresnet26t": 32,
    "resnet50_gn": 32, "res2net50_14w_8s": 32, "nf_resnet26": 32, "gernet_s": 32,
    "repvgg_a0": 32, "selecsls42b": 32, "dpn48b": 32, "cspresnet50": 32, "cs3darknet_s": 32,
    # mobile CNNs
    "mobilenetv2_050": 32, "mobilenetv3_small_050": 32, "mobilenetv3_large_100": 32,
    "mobilenetv4_conv_small": 32, "efficientnet_b0": 32, "efficientnet_lite0": 32,
    "tf_efficientnetv2_b0": 32, "mnasnet_050": 32, "semnasnet_050": 32, "fbnetc_100": 32,
    "spnasnet_100": 32, "lcnet_050": 32, "hardcorenas_a": 32, "tinynet_e": 32,
    "ghostnet_050": 32, "ghostnetv2_100": 64, "repghostnet_050": 32, "mixnet_s": 32,
    "rexnet_100": 32, "hgnetv2_b0": 32,
    # other CNN families
    "regnetx_002": 32, "regnety_002": 32, "densenet121": 32, "dla34": 32, "dla46_c": 32,
    "hrnet_w18_small": 64, "vovnet39a": 32, "ese_vovnet19b_slim_dw": 32, "xception41": 32,
    "inception_v3": 75, "convnext_atto": 32, "convnextv2_atto": 32, "edgenext_xx_small": 64,
    # transformers, hybrids and MLPs
    "vit_tiny_patch16_224": 32, "deit_tiny_patch16_224": 32,
    "swin_tiny_patch4_window7_224": 224, "mobilevit_xxs": 64, "levit_128s": 224,
    "efficientformer_l1": 224, "fastvit_t8": 64, "poolformer_s12": 32, "resmlp_12_224": 32,
    "mixer_s32_224": 64,
}


def cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                    if ln.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    import timm
    import torch

    args = survey_args(__doc__.splitlines()[0], RESULTS / "timm_coverage", argv)
    names = args.models.split(",") if args.models else list(MODELS)
    header = (f"timm {timm.__version__}, torch {torch.__version__}; CPU: {cpu()}, "
              f"{args.threads} thread(s), fp32; random init, 10 classes, batch 2. "
              "`python bench/timm_coverage.py` (the checks of bench/torchvision_coverage.py: "
              "trace, base cost == thop, a 50%FLOPs and a random genome shrunk, forward + "
              "backward, cost == thop).\n\n")
    survey(names, args, lambda n: check(n, "timm", MODELS.get(n, 32)), "timm models", header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
