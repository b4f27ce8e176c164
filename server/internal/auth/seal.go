package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// A guest proves a retried StartGuestChat with its request id, a random
// UUID that only the guest's client knows: it is never stored and never
// shown to anyone else. The store keeps a hash of it to find the chat, and
// the guest's token sealed under a key derived from it, so the retry gets
// the same token back and nobody who reads the store can open it.

// GuestRequestKey is the stored lookup key of a StartGuestChat request id.
func GuestRequestKey(requestID string) string {
	sum := sha256.Sum256([]byte("parley/guest-request/v1\x00" + requestID))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// sealKey derives the key that seals a guest token from its request id.
func sealKey(requestID string) []byte {
	sum := sha256.Sum256([]byte("parley/guest-token-seal/v1\x00" + requestID))
	return sum[:]
}

func sealAEAD(requestID string) cipher.AEAD {
	block, err := aes.NewCipher(sealKey(requestID))
	if err != nil {
		panic(fmt.Sprintf("auth: a 32-byte AES key was refused: %v", err))
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(fmt.Sprintf("auth: GCM: %v", err))
	}
	return aead
}

// SealGuestToken encrypts a guest token under its request id.
func SealGuestToken(requestID, secret string) []byte {
	aead := sealAEAD(requestID)
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails
	return aead.Seal(nonce, nonce, []byte(secret), nil)
}

// errSealBroken means a sealed token did not open with the request id.
var errSealBroken = errors.New("auth: sealed guest token does not open with this request id")

// OpenGuestToken decrypts a token SealGuestToken sealed under requestID.
func OpenGuestToken(requestID string, sealed []byte) (string, error) {
	aead := sealAEAD(requestID)
	if len(sealed) < aead.NonceSize() {
		return "", errSealBroken
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
	if err != nil {
		return "", errSealBroken
	}
	return string(plain), nil
}
