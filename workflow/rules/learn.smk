# Learning: θ(t0) per IC and split (static Boltzmann learning), then the dynamics (Algorithm 1).


rule fit_initial:
    input:
        config=lambda wc: model_config(wc.exp, wc.model),
        moments=f"{RESULTS}/moments/{{split}}.h5",
        sims=lambda wc: model_sims(wc.exp, wc.model, wc.split),
    output:
        f"{RESULTS}/models/{{model}}/initial_{{split}}.h5",
    log:
        f"{RESULTS}/logs/fit_initial/{{model}}_{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit_initial/{{model}}_{{split}}.tsv"
    conda:
        "../../envs/dbdflow.yaml"
    script:
        "../scripts/fit_initial.py"


rule train:
    input:
        config=lambda wc: model_config(wc.exp, wc.model),
        moments=f"{RESULTS}/moments/train.h5",
        initial=f"{RESULTS}/models/{{model}}/initial_train.h5",
        sims=lambda wc: model_sims(wc.exp, wc.model, "train"),
    output:
        report(
            f"{RESULTS}/models/{{model}}/dynamics.h5",
            caption="../report/dynamics.rst",
            category="Learned dynamics",
            subcategory="{model}",
        ),
    log:
        f"{RESULTS}/logs/train/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}.tsv"
    conda:
        "../../envs/dbdflow.yaml"
    script:
        "../scripts/train.py"
