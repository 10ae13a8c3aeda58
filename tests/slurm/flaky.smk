# Test-only workflow for the SLURM test: a job that fails when given less than 400 MB (as if killed
# for memory), run with the repository's SLURM profile, whose retry doubles the rule's memory.


rule all:
    input:
        "results/flaky.txt",


rule flaky:
    output:
        "results/flaky.txt",
    resources:
        mem_mb=lambda wildcards, attempt: 200 * attempt,
        runtime=5,
    log:
        "logs/flaky.log",
    shell:
        "echo attempt with {resources.mem_mb} MB > {log}; test {resources.mem_mb} -ge 400 && echo ok > {output}"
