#!/usr/bin/env python3
"""Writes Portcullis standalone manifests for the benchmarks.

  gen_manifests.py base DIR CERT KEY      one host-less Ingress: / -> 127.0.0.1:9000, /ws/ -> :9002
  gen_manifests.py scale DIR CERT KEY     S9/S10 scale: 10,000 Ingresses, 10,000 Services,
                                          50,000 endpoints (127.x.y.z), 1,000 TLS Secrets
  gen_manifests.py hosts DIR CERT KEY     S7: 10,000 exact hosts and 1,000 wildcards, 1-5 paths
                                          each, all served by the live backend (Service be)
"""
import base64
import os
import sys


def service(name, addrs, port, ns="bench"):
    eps = "".join(
        f'  - addresses: ["{a}"]\n    conditions: {{ready: true}}\n' for a in addrs
    ) or "  []\n"
    return (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n"
        f"spec:\n  ports: [{{name: http, port: 80}}]\n---\n"
        f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n"
        f"  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {name}}}\n"
        f"addressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints:\n{eps}"
    )


def secret(name, crt, key, ns="bench"):
    b = lambda s: base64.b64encode(s.encode()).decode()
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\n"
        f"type: kubernetes.io/tls\ndata:\n  tls.crt: {b(crt)}\n  tls.key: {b(key)}\n"
    )


def base(d, crt, key):
    with open(os.path.join(d, "bench.yaml"), "w") as f:
        f.write("\n---\n".join([
            service("be", ["127.0.0.1"], 9000),
            service("ws", ["127.0.0.1"], 9002),
            secret("bench-tls", crt, key),
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: bench, namespace: bench}\n"
            "spec:\n  ingressClassName: portcullis\n  rules:\n  - http:\n      paths:\n"
            "      - {path: /, pathType: Prefix, backend: {service: {name: be, port: {number: 80}}}}\n"
            "      - {path: /ws/, pathType: Prefix, backend: {service: {name: ws, port: {number: 80}}}}\n",
        ]) + "\n")


def scale(d, crt, key, ingresses=10_000, endpoints_per_service=5, secrets=1_000):
    """One file per 1,000 objects so a single edit re-reads one small file."""
    docs = []
    for i in range(ingresses):
        addrs = [f"127.{1 + (i * endpoints_per_service + j) // 65536 % 250}."
                 f"{(i * endpoints_per_service + j) // 256 % 256}.{(i * endpoints_per_service + j) % 256}"
                 for j in range(endpoints_per_service)]
        docs.append(service(f"svc-{i}", addrs, 9000))
    for i in range(1, secrets):
        docs.append(secret(f"tls-{i}", crt, key))
    with open(os.path.join(d, "rotate.yaml"), "w") as f:  # tls-0 alone: S10 rotates it
        f.write(secret("tls-0", crt, key))
    for i in range(ingresses):
        host = f"h{i}.bench.test"
        tls = (f"  tls:\n  - hosts: [{host}]\n    secretName: tls-{i}\n" if i < secrets else "")
        paths = "".join(
            f"      - {{path: /p{k}, pathType: Prefix, backend: {{service: {{name: svc-{i}, port: {{number: 80}}}}}}}}\n"
            for k in range(1 + i % 5))
        docs.append(
            f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing-{i}, namespace: bench,"
            f" annotations: {{portcullis.dev/ssl-redirect: \"false\"}}}}\n"
            f"spec:\n  ingressClassName: portcullis\n{tls}  rules:\n  - host: {host}\n    http:\n      paths:\n{paths}")
    for n in range(0, len(docs), 1000):
        with open(os.path.join(d, f"scale-{n // 1000:03}.yaml"), "w") as f:
            f.write("\n---\n".join(docs[n:n + 1000]) + "\n")


def hosts(d, crt, key, exact=10_000, wildcards=1_000):
    docs = []
    for i in range(exact + wildcards):
        host = f"h{i}.bench.test" if i < exact else f"*.w{i - exact}.bench.test"
        paths = "".join(
            f"      - {{path: {'/' if k == 0 else f'/p{k}'}, pathType: Prefix, backend: {{service: {{name: be, port: {{number: 80}}}}}}}}\n"
            for k in range(1 + i % 5))
        docs.append(
            f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: host-{i}, namespace: bench}}\n"
            f"spec:\n  ingressClassName: portcullis\n  rules:\n  - host: \"{host}\"\n    http:\n      paths:\n{paths}")
    for n in range(0, len(docs), 1000):
        with open(os.path.join(d, f"hosts-{n // 1000:03}.yaml"), "w") as f:
            f.write("\n---\n".join(docs[n:n + 1000]) + "\n")


if __name__ == "__main__":
    mode, d, crt_path, key_path = sys.argv[1:5]
    os.makedirs(d, exist_ok=True)
    crt, key = open(crt_path).read(), open(key_path).read()
    {"base": base, "scale": scale, "hosts": hosts}[mode](d, crt, key)
