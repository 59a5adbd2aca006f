// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title OperatorConsent
/// @notice The registry's proof that an operator address agreed to be named by a record.
///
/// A record points at an operator (the address vouchers are made out to and whose reputation
/// the record shows) and publishes an X25519 key in its name. Without consent anyone could
/// register a name pointing at a well-reputed operator, or publish a key that operator does
/// not hold. So every (node, owner, operator, pubkey) a record takes is either sent by the
/// operator itself or carries the operator's EIP-712 signature over
/// `OperatorConsent(bytes32 node,address owner,address operator,bytes32 pubkey,uint256 nonce,uint256 deadline)`
/// (domain `{name: "Khachapuri Registry", version: "1", chainId, verifyingContract}`).
/// The per-operator `nonce` is used up by each consent, so a signature works once; the
/// `deadline` bounds how long an unused one stays valid. Contract operators sign via ERC-1271.
abstract contract OperatorConsent is EIP712, Nonces {
    /// @notice What an owner that is not the operator attaches: the operator's signature and
    ///         the deadline it signed.
    struct Consent {
        uint256 deadline;
        bytes signature;
    }

    /// @notice EIP-712 type hash of `OperatorConsent`.
    bytes32 public constant CONSENT_TYPEHASH = keccak256(
        "OperatorConsent(bytes32 node,address owner,address operator,bytes32 pubkey,uint256 nonce,uint256 deadline)"
    );

    /// @notice The change names `operator`, who neither sent it nor signed a consent.
    error OperatorConsentRequired(address operator);
    /// @notice The consent's deadline has passed.
    error ConsentExpired(uint256 deadline);
    /// @notice The consent signature is not the operator's for these fields and its nonce.
    error BadConsent();

    constructor() EIP712("Khachapuri Registry", "1") {}

    /// @notice The digest `operator` signs to let `owner` point `node` at it with `pubkey`,
    ///         for the operator's current nonce (see `nonces`).
    function consentDigest(bytes32 node, address owner, address operator, bytes32 pubkey, uint256 deadline)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(
            keccak256(abi.encode(CONSENT_TYPEHASH, node, owner, operator, pubkey, nonces(operator), deadline))
        );
    }

    /// @notice The EIP-712 domain separator, for signers that want it precomputed.
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// Reverts unless the caller is `operator` itself.
    function _requireOperator(address operator) internal view {
        if (msg.sender != operator) revert OperatorConsentRequired(operator);
    }

    /// Checks `consent` and uses up the operator's nonce (a signature works once).
    function _useConsent(bytes32 node, address owner, address operator, bytes32 pubkey, Consent calldata consent)
        internal
    {
        if (block.timestamp > consent.deadline) revert ConsentExpired(consent.deadline);
        bytes32 digest = consentDigest(node, owner, operator, pubkey, consent.deadline);
        if (!SignatureChecker.isValidSignatureNow(operator, digest, consent.signature)) revert BadConsent();
        _useNonce(operator);
    }
}
