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
    package_data={"serving": ["config/*", "deploy/*"]},
    install_requires=[
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "tensorflow-recommenders==0.7.7",
        "tfx==1.16.0",
        "tensorflow-transform==1.16.0",
        "tensorflow-model-analysis==0.47.1",
        "tensorflow-serving-api==2.16.1",
        "kfp-pipeline-spec==0.2.2",
        "apache-beam[gcp]==2.74.0",
        "dill<0.3.2",
        "pandas",
        "pyarrow",
        "matplotlib",
    ],
    entry_points={"console_scripts": ["limaml=limaml.cli:main"]},
)
