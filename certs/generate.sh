#!/usr/bin/env bash
# Generates a CA and a serving certificate for node-agent-webhook with openssl.
#
#   bash certs/generate.sh                              # node-agent-webhook.velero.svc
#   NAMESPACE=openshift-adp bash certs/generate.sh      # another Velero namespace
#   OUT_DIR=/tmp/naw-certs bash certs/generate.sh       # somewhere else (tests, `make run`)
#
# Environment (all optional):
#   SERVICE       Service name                       (default: node-agent-webhook)
#   NAMESPACE     namespace of the Service            (default: velero)
#   OUT_DIR       where to write the files            (default: the directory of this script)
#   CA_DAYS       validity of a new CA                (default: 3650)
#   SERVING_DAYS  validity of the serving certificate (default: 365)
#   FORCE_CA      1 = replace an existing CA          (default: 0, an existing CA is reused)
#
# Writes into OUT_DIR (keys mode 0600; *.key and *.pem are git-ignored in certs/):
#   ca.pem, ca.key            the CA; ca.pem is what the API server must trust (caBundle)
#   serving.pem, serving.key  the serving certificate (SANs <svc>.<ns>.svc and
#                             <svc>.<ns>.svc.cluster.local) and its PKCS#8 key
# manifests/overlays/self-signed turns these into the Secret node-agent-webhook-tls (via
# certs/kustomization.yaml) and copies base64(ca.pem) into both webhook configurations' caBundle.
#
# An existing, still valid CA is kept, so regenerating the serving certificate (another
# namespace, or before it expires) does not change the caBundle already in the cluster.
# Keys are ECDSA P-256: accepted by kube-apiserver (Go) and rustls alike, and cheap to handshake.
set -euo pipefail

SERVICE="${SERVICE:-node-agent-webhook}"
NAMESPACE="${NAMESPACE:-velero}"
OUT_DIR="${OUT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
CA_DAYS="${CA_DAYS:-3650}"
SERVING_DAYS="${SERVING_DAYS:-365}"
FORCE_CA="${FORCE_CA:-0}"
OPENSSL="${OPENSSL:-openssl}"

die() { echo "certs/generate.sh: $*" >&2; exit 1; }

# DNS-1123 labels: a Service name and a namespace are both.
dns_label='^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'
[[ "$SERVICE" =~ $dns_label ]] || die "SERVICE '$SERVICE' is not a DNS-1123 label"
[[ "$NAMESPACE" =~ $dns_label ]] || die "NAMESPACE '$NAMESPACE' is not a DNS-1123 label"
[[ "$CA_DAYS" =~ ^[1-9][0-9]*$ ]] || die "CA_DAYS '$CA_DAYS' is not a positive integer"
[[ "$SERVING_DAYS" =~ ^[1-9][0-9]*$ ]] || die "SERVING_DAYS '$SERVING_DAYS' is not a positive integer"
command -v "$OPENSSL" >/dev/null 2>&1 || die "openssl not found (set OPENSSL=/path/to/openssl)"

mkdir -p "$OUT_DIR"
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fqdn_short="${SERVICE}.${NAMESPACE}.svc"
fqdn_long="${fqdn_short}.cluster.local"

# --- CA -------------------------------------------------------------------------------------
ca_is_usable() {
	[[ -s "$OUT_DIR/ca.pem" && -s "$OUT_DIR/ca.key" ]] || return 1
	# Still valid for at least as long as the serving certificate we are about to sign.
	"$OPENSSL" x509 -in "$OUT_DIR/ca.pem" -noout -checkend $((SERVING_DAYS * 86400)) >/dev/null 2>&1 || return 1
	# The key belongs to the certificate.
	[[ "$("$OPENSSL" x509 -in "$OUT_DIR/ca.pem" -noout -pubkey)" == \
		"$("$OPENSSL" pkey -in "$OUT_DIR/ca.key" -pubout)" ]]
}

if [[ "$FORCE_CA" != "1" ]] && ca_is_usable; then
	echo "certs/generate.sh: reusing the CA in $OUT_DIR (FORCE_CA=1 replaces it)"
	cp "$OUT_DIR/ca.pem" "$work/ca.pem"
	cp "$OUT_DIR/ca.key" "$work/ca.key"
else
	echo "certs/generate.sh: creating a CA valid for $CA_DAYS days"
	"$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca.key"
	"$OPENSSL" req -x509 -new -sha256 -key "$work/ca.key" -out "$work/ca.pem" \
		-days "$CA_DAYS" -subj "/O=node-agent-webhook/CN=node-agent-webhook-ca" \
		-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "subjectKeyIdentifier=hash"
fi

# --- serving certificate --------------------------------------------------------------------
echo "certs/generate.sh: signing a serving certificate for $fqdn_short, valid for $SERVING_DAYS days"
"$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/serving.key"
"$OPENSSL" req -new -sha256 -key "$work/serving.key" -out "$work/serving.csr" \
	-subj "/O=node-agent-webhook/CN=${fqdn_short}"
cat >"$work/serving.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:${fqdn_short}, DNS:${fqdn_long}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
# A random 128-bit serial instead of -CAcreateserial, which would leave a ca.srl file behind.
"$OPENSSL" x509 -req -sha256 -in "$work/serving.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
	-set_serial "0x$("$OPENSSL" rand -hex 16)" -days "$SERVING_DAYS" \
	-extfile "$work/serving.ext" -out "$work/serving.pem" 2>/dev/null

"$OPENSSL" verify -CAfile "$work/ca.pem" -purpose sslserver "$work/serving.pem" >/dev/null ||
	die "the serving certificate does not verify against the CA"

# Move into place only once everything is generated and verified (same directory => atomic;
# the temporary names keep the .key/.pem suffix, so git ignores them too).
for f in ca.key serving.key; do
	install -m 0600 "$work/$f" "$OUT_DIR/.tmp-$f" && mv -f "$OUT_DIR/.tmp-$f" "$OUT_DIR/$f"
done
for f in ca.pem serving.pem; do
	install -m 0644 "$work/$f" "$OUT_DIR/.tmp-$f" && mv -f "$OUT_DIR/.tmp-$f" "$OUT_DIR/$f"
done

echo "certs/generate.sh: wrote $OUT_DIR/{ca.pem,ca.key,serving.pem,serving.key}"
echo "certs/generate.sh: SANs: DNS:${fqdn_short}, DNS:${fqdn_long}; expires $("$OPENSSL" x509 -in "$OUT_DIR/serving.pem" -noout -enddate | cut -d= -f2)"
if [[ "$NAMESPACE" != "velero" || "$SERVICE" != "node-agent-webhook" ]]; then
	echo "certs/generate.sh: note: manifests/overlays/self-signed deploys Service node-agent-webhook into 'velero';" \
		"deploy these certificates with an overlay that uses '$SERVICE' in '$NAMESPACE'" >&2
fi
