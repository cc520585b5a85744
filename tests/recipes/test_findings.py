"""The findings sentences follow the numbers: recipe summaries on fabricated run records."""

from pathlib import Path

from stbin.recipes import RecipeContext, get_recipe


def _rec(acc, loss=0.1, dataset="fashion_mnist", epochs=2):
    hist = [{"epoch": e + 1, "train_loss": loss, "test_accuracy": acc, "epoch_time_s": 1.0, "images_per_s": 10.0}
            for e in range(epochs)]
    return {"test": {"mode": acc}, "history": hist, "time_s": 5.0, "device": "cpu", "epochs": epochs,
            "images_per_s": 10.0, "dataset": dataset}


def _ctx(name, results, tmp_path, seeds=(0, 1, 2)):
    recipe = get_recipe(name)
    return RecipeContext(recipe, False, list(seeds), Path(tmp_path), "fashion_mnist",
                         recipe.runs(False, list(seeds), "fashion_mnist"), results)


def test_activation_quantized_best_ste_margins_seed_counts_and_depth(tmp_path):
    acc = {  # (net, ste) -> per-seed accuracy at 2 bits
        ("lenet5", "identity"): [98.8, 98.9, 98.7], ("lenet5", "relu"): [99.1, 99.0, 99.2],
        ("lenet5", "clipped_relu"): [99.2, 99.1, 99.1],
        ("resnet20-fashion_mnist", "identity"): [85.0, 86.0, 84.0],
        ("resnet20-fashion_mnist", "relu"): [90.0, 91.0, 89.0],
        ("resnet20-fashion_mnist", "clipped_relu"): [91.0, 90.5, 90.0]}
    results = {}
    for (net, ste), accs in acc.items():
        ds = "mnist" if net == "lenet5" else "fashion_mnist"
        for s, a in enumerate(accs):
            results[f"{net}-fp-s{s}"] = _rec(99.0, dataset=ds)
            results[f"{net}-q2-{ste}-s{s}"] = _rec(a, dataset=ds)
    text = get_recipe("activation-quantized").summarize(_ctx("activation-quantized", results, tmp_path))
    # LeNet-5: clipped 99.133, relu 99.1, identity 98.8; clipped best (and ahead of ReLU) in seeds 0 and 1
    assert ("* LeNet-5 / MNIST, 2 bits: best test accuracy with the clipped ReLU STE (99.13%, +0.03 points over "
            "the ReLU STE, +0.33 over the identity STE; the best of the STEs in 2 of 3 seeds)") in text
    assert "Clipped ReLU vs ReLU STE: +0.03 points, ahead in 2 of 3 seeds." in text
    # ResNet-20: clipped 90.5, relu 90.0, identity 85.0
    assert "* ResNet-20 / Fashion-MNIST, 2 bits: best test accuracy with the clipped ReLU STE (90.50%, +0.50" in text
    assert ("* Depth, 2 bits: the identity STE is 0.33 points below the best STE on LeNet-5 / MNIST and 5.50 points "
            "on ResNet-20 / Fashion-MNIST: the choice of STE matters more on the deeper network.") in text
    assert "| ResNet-20 / Fashion-MNIST | 12 | 2 |" in text  # cost: 12 finished runs, 2 epochs each
    assert "\n* not run" in text and "|\n* not run" not in text  # notes never inside a table


def test_ste_instability_depth_comparison_against_the_controls(tmp_path):
    results = {}
    for net, ds, start, ident, ctl in (("lenet5", "mnist", 99.0, 98.8, 99.0),
                                        ("resnet20-fashion_mnist", "fashion_mnist", 90.0, 85.0, 90.5)):
        results[f"{net}-fp-s0"] = _rec(99.0, dataset=ds)
        results[f"{net}-q2-relu-s0"] = _rec(start, dataset=ds)
        for target, a in (("identity", ident), ("relu", ctl)):
            results[f"{net}-q2-relu-to-{target}-small-s0"] = _rec(start, dataset=ds)
            results[f"{net}-q2-relu-to-{target}-s0"] = _rec(a, dataset=ds)
    text = get_recipe("ste-instability").summarize(_ctx("ste-instability", results, tmp_path, seeds=(0,)))
    assert ("* Depth, 2 bits, from the ReLU STE: against its control the identity continuation ends -0.20 points "
            "of test accuracy on LeNet-5 / MNIST and -5.50 on ResNet-20 / Fashion-MNIST: it degrades the deeper "
            "network more.") in text
