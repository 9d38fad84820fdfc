#!/usr/bin/env bash
# Writes the e2e control plane's PKI into DIR: CA, kube-apiserver serving cert (127.0.0.1),
# admin client cert (system:masters) and the service-account signing key pair (EC, 2 days).
set -euo pipefail
DIR=${1:?usage: pki.sh DIR}
mkdir -p "$DIR" && cd "$DIR"
ossl() { openssl "$@" 2>>openssl.log >/dev/null || { echo "pki.sh: openssl $1 failed, see $DIR/openssl.log" >&2; exit 1; }; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=e2e-ca -keyout ca.key -out ca.crt
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=kube-apiserver -keyout apiserver.key -out apiserver.csr
ossl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out apiserver.crt \
  -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth')
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=system:masters/CN=e2e-admin" -keyout admin.key -out admin.csr
ossl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out admin.crt \
  -extfile <(printf 'extendedKeyUsage=clientAuth')
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
ossl pkey -in sa.key -pubout -out sa.pub
