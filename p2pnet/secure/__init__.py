"""
Secure sessions: every p2pnet connection is encrypted and authenticated.

  - L{p2pnet.secure._noise}: the Noise protocol framework
    (C{Noise_IKpsk2_25519_AESGCM_BLAKE2s}: X25519, AES-256-GCM and BLAKE2s),
    run inside the hello/answer exchange;
  - L{p2pnet.secure.identity}: an endpoint's static X25519 key pair;
  - L{p2pnet.secure.trust}: pinned peer keys (trust on first use);
  - L{p2pnet.secure._packet}: sealing and opening data packets, key epochs
    (rekey);
  - L{p2pnet.secure._replay}: the replay window of each key epoch;
  - L{p2pnet.secure._frames}: the frames inside a sealed packet;
  - L{p2pnet.secure._pathcheck}: path validation before a connection moves.

See docs/security.md for the threat model and docs/protocol.md for the
bytes.
"""
