"""Adversarial robustness by design (issue 13): the OPU in the forward path, trained with DFA, attacked.

* :mod:`.optical` - the optical layer (device forward, outside jit) and its backward surrogates.
* :mod:`.model`, :mod:`.task`, :mod:`.finetune` - ``opu train --model cnn-opu`` and ROPUST fine-tuning.
* :mod:`.attacks` - FGSM, PGD, transfer; Square and HopSkipJump through ART's black-box classifier.
* :mod:`.evaluate` - ``opu robustness RUN_DIR``: every attack, robustness.json and the plot.

Method, equations and attack settings: docs/robustness.md.
"""
