"""LiMAML: meta-learned personalisation of deep recommender models (KDD 2024) for TFX and TF Serving."""
import setuptools

setuptools.setup(
    name="limaml",
    version="0.1.0",
    description="Meta-learned per-member personalisation of deep rankers: Keras layers, TFX pipeline, TF Serving.",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.11",
    packages=setuptools.find_packages(include=["limaml", "limaml.*", "limaml_keras*", "tfx_pipeline*", "serving*"]),
    # The TF Serving configs and deployment manifests ship with the `serving` package.
    package_data={"serving": ["models.config", "batching_parameters.txt", "monitoring.config",
                              "docker-compose.yml", "kubernetes/*.yaml"]},
    # Versions are pinned by constraints.txt (`pip install -c constraints.txt`); run.sh
    # installs every extra (requirements.in).
    install_requires=[  # The Keras library, `limaml_keras`.
        "tensorflow",
        "tf-keras",
        "tensorflow-recommenders",
        "numpy",
        "pandas",
    ],
    extras_require={
        # The TFX pipeline, its Beam jobs and the `limaml pipeline/embeddings` commands.
        "pipeline": [
            "tfx",
            "tensorflow-transform",
            "tensorflow-model-analysis",
            "apache-beam[gcp]",
            "dill<0.3.2",
            "kfp-pipeline-spec",
            "tensorflow-serving-api",
            "pyarrow",
        ],
        # `limaml_keras.evaluation.report`'s plots.
        "evaluation": ["matplotlib"],
        # The serving side: gRPC/REST clients and the dev server.
        "serving": [
            "tensorflow-serving-api",
            "grpcio",
            "requests",
        ],
    },
    entry_points={"console_scripts": ["limaml=limaml.cli:main"]},
)
