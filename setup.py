"""Install tf_fairprune: `pip install -e .` (add `[test]` for the test suite)."""

import setuptools

setuptools.setup(
    name="tf_fairprune",
    version="0.1.0",
    description="Bi-level fair pruning for Keras 3 (import keras, TensorFlow backend) and "
                "tf_keras (Keras 2, next to TFMOT): prune a model and keep it fair across "
                "groups in one training run.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=setuptools.find_packages(include=["tf_fairprune", "tf_fairprune.*"]),
    python_requires=">=3.10",
    # The main job (tf_fairprune.job): `tf-fairprune --help`.
    entry_points={"console_scripts": ["tf-fairprune = tf_fairprune.job.main:run"]},
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "tf-keras>=2.16,<2.22",
        "keras>=3.5",  # Keras 3 (TensorFlow depends on it too); tf_fairprune.keras3
        "tensorflow-model-optimization>=0.8.0",
        "absl-py",
        "numpy",
    ],
    extras_require={
        "litert": ["ai-edge-litert>=2.0"],
        "tensorboard": ["tensorboard"],
        "fairness": ["fairlearn"],
        "plots": ["matplotlib"],
        "datasets": ["tensorflow-datasets"],
        "test": ["pytest", "pytest-xdist", "hypothesis", "fairlearn", "scikit-learn",
                 "ai-edge-litert>=2.0", "tensorboard", "matplotlib", "tensorflow-datasets"],
    },
    classifiers=[
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Software Development :: Libraries :: Python Modules",
    ],
)
