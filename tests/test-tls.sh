#!/usr/bin/env bash
# Description: TLS as real clients use it, with credentials made by
# certtool and psktool, against both front-ends (punchcached's own GnuTLS
# code, and nbdkit's TLS in front of the plugin -- the same flags):
#  - X.509 (--tls=require --tls-certificates=DIR): nbdinfo over
#    nbds+unix:// says the connection uses TLS; a write/read round trip
#    with nbdsh (TLS_REQUIRE, a certificates directory); a plaintext client
#    is refused (nbdinfo and nbdsh with TLS disabled).  (Whether a client
#    trusts the server is the client's business, and libnbd 1.14 does not
#    check the server's certificate on a Unix socket.)
#  - --tls-verify-peer: a client with a certificate from the CA gets in,
#    one without a certificate does not.
#  - PSK (--tls=require --tls-psk=FILE): nbdinfo and an nbdsh round trip
#    as "alice"; a wrong key and an unknown user are refused; plaintext is
#    refused.  qemu-img info through a tls-creds-psk object.
#  - --tls=on: plaintext and TLS clients both get in.
# Every TLS round trip checks the data written through one connection is
# read back, byte for byte, through another.
source "${top_srcdir:?run through make check}/tests/functions.sh" || exit 99
requires nbdsh --version
requires nbdinfo --version
requires certtool --version
requires psktool --version


# ---- credentials ----
ct () { certtool --key-type=ecdsa "$@" </dev/null >>"$tmp/certtool.log" 2>&1 ||
            { cat "$tmp/certtool.log" >&2; fail "certtool $*"; }; }
mkdir "$tmp/ca" "$tmp/server" "$tmp/client" "$tmp/nocert" "$tmp/psk"
printf 'cn = punchcache test CA\nca\ncert_signing_key\nexpiration_days = 2\n' \
    > "$tmp/ca.info"
printf 'cn = localhost\ndns_name = localhost\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n' \
    > "$tmp/server.info"
printf 'cn = test client\ntls_www_client\nsigning_key\nencryption_key\nexpiration_days = 2\n' \
    > "$tmp/client.info"
ct --generate-privkey --outfile "$tmp/ca/ca-key.pem"
ct --generate-self-signed --load-privkey "$tmp/ca/ca-key.pem" \
   --template "$tmp/ca.info" --outfile "$tmp/ca/ca-cert.pem"
signed () {   # signed KEY CERT TEMPLATE
    ct --generate-privkey --outfile "$1"
    ct --generate-certificate --load-privkey "$1" \
       --load-ca-certificate "$tmp/ca/ca-cert.pem" \
       --load-ca-privkey "$tmp/ca/ca-key.pem" --template "$3" --outfile "$2"
}
signed "$tmp/server/server-key.pem" "$tmp/server/server-cert.pem" "$tmp/server.info"
signed "$tmp/client/client-key.pem" "$tmp/client/client-cert.pem" "$tmp/client.info"
cp "$tmp/ca/ca-cert.pem" "$tmp/server/"
cp "$tmp/ca/ca-cert.pem" "$tmp/client/"
cp "$tmp/ca/ca-cert.pem" "$tmp/nocert/"            # trusts, no certificate
psktool -u alice -p "$tmp/psk/keys.psk" >/dev/null
psktool -u alice -p "$tmp/wrong.psk" >/dev/null
psktool -u bob -p "$tmp/bob.psk" >/dev/null

pool=(pool="$tmp/pool" size=64M volume=main:16M)
sock=$tmp/sock

# roundtrip TAG SETUP: nbdsh writes 1 MiB of a pattern derived from TAG
# through one connection and reads it back through a second, both set up
# by the python statements SETUP (on handle h) before connect_unix.
roundtrip () {
    SOCK=$sock TAG=$1 WANT_TLS=${WANT_TLS:-1} timeout 60 nbdsh -c '
import os, hashlib
def conn():
    h = nbd.NBD()
    '"$2"'
    h.set_export_name("main")
    h.connect_unix(os.environ["SOCK"])
    return h
tag = os.environ["TAG"].encode()
data = b"".join(hashlib.sha256(tag + i.to_bytes(4, "little")).digest()
                for i in range(32768))          # 1 MiB
h = conn()
h.pwrite(data, 65536 * 3 + 512)
h.flush()
tls1 = h.get_tls_negotiated()
h.shutdown()
h = conn()
got = h.pread(len(data), 65536 * 3 + 512)
tls2 = h.get_tls_negotiated()
h.shutdown()
assert got == data, "data read back differs"
print("roundtrip", os.environ["TAG"], "tls", tls1, tls2)
assert tls1 == tls2
if os.environ.get("WANT_TLS", "1") == "1":
    assert tls1, "TLS was not negotiated"
' || fail "round trip '$1' failed"
}

# refused WHAT SETUP: an nbdsh connection set up by SETUP must fail.
refused () {
    if SOCK=$sock timeout 60 nbdsh -c '
import os
h = nbd.NBD()
'"$1"'
h.set_export_name("main")
h.connect_unix(os.environ["SOCK"])
h.pread(512, 0)
' 2>"$tmp/refused.err"; then
        fail "a client was let in: $2"
    fi
    echo "refused as expected ($2): $(tail -1 "$tmp/refused.err")"
}

uri="nbd+unix:///main?socket=$sock"
suri="nbds+unix:///main?socket=$sock"

# ---- X.509, --tls=require ----
rm -f "$tmp/pool"
start_punchcache "$sock" --tls=require --tls-certificates="$tmp/server" "${pool[@]}"
timeout 60 nbdinfo --is tls "$suri&tls-certificates=$tmp/client" ||
    fail "nbdinfo: X.509 connection not using TLS"
timeout 60 nbdinfo "$suri&tls-certificates=$tmp/nocert" >/dev/null ||
    fail "nbdinfo: X.509 without a client certificate (no --tls-verify-peer)"
roundtrip x509 "h.set_tls(nbd.TLS_REQUIRE); h.set_tls_certificates('$tmp/client')"
refused "h.set_tls(nbd.TLS_DISABLE)" "plaintext under --tls=require"
if timeout 60 nbdinfo "$uri" >/dev/null 2>&1; then
    fail "nbdinfo: plaintext client let in under --tls=require"
fi
stop_nbdkit

# ---- X.509, --tls-verify-peer ----
start_punchcache "$sock" --tls=require --tls-certificates="$tmp/server" \
    --tls-verify-peer "${pool[@]}"
roundtrip x509-verified "h.set_tls(nbd.TLS_REQUIRE); h.set_tls_certificates('$tmp/client')"
refused "h.set_tls(nbd.TLS_REQUIRE); h.set_tls_certificates('$tmp/nocert')" \
    "no client certificate under --tls-verify-peer"
stop_nbdkit

# ---- PSK, --tls=require ----
start_punchcache "$sock" --tls=require --tls-psk="$tmp/psk/keys.psk" "${pool[@]}"
timeout 60 nbdinfo --is tls \
    "nbds+unix://alice@/main?socket=$sock&tls-psk-file=$tmp/psk/keys.psk" ||
    fail "nbdinfo: PSK connection not using TLS"
roundtrip psk "h.set_tls(nbd.TLS_REQUIRE); h.set_tls_username('alice'); h.set_tls_psk_file('$tmp/psk/keys.psk')"
refused "h.set_tls(nbd.TLS_REQUIRE); h.set_tls_username('alice'); h.set_tls_psk_file('$tmp/wrong.psk')" \
    "a wrong PSK"
refused "h.set_tls(nbd.TLS_REQUIRE); h.set_tls_username('bob'); h.set_tls_psk_file('$tmp/bob.psk')" \
    "an unknown PSK user"
refused "h.set_tls(nbd.TLS_DISABLE)" "plaintext under --tls=require"
if command -v qemu-img >/dev/null; then
    timeout 60 qemu-img info \
        --object "tls-creds-psk,id=tls0,endpoint=client,dir=$tmp/psk,username=alice" \
        --image-opts "driver=nbd,path=$sock,export=main,tls-creds=tls0" \
        > "$tmp/qemu.out" || fail "qemu-img info over TLS-PSK failed"
    grep -q "virtual size: 16 MiB" "$tmp/qemu.out" ||
        { cat "$tmp/qemu.out"; fail "qemu-img info: wrong size"; }
fi
stop_nbdkit

# ---- --tls=on: both ----
start_punchcache "$sock" --tls=on --tls-psk="$tmp/psk/keys.psk" "${pool[@]}"
WANT_TLS=0 roundtrip plain-on "h.set_tls(nbd.TLS_DISABLE)"
roundtrip psk-on "h.set_tls(nbd.TLS_REQUIRE); h.set_tls_username('alice'); h.set_tls_psk_file('$tmp/psk/keys.psk')"
if timeout 60 nbdinfo --is tls "$uri"; then
    fail "nbdinfo: a plaintext URI reports TLS"
fi
stop_nbdkit
echo "tls ok"
