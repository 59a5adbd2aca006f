// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IReputation} from "./IReputation.sol";

/// @title Escrow
/// @notice Unidirectional payment channels payer -> provider, paid with off-chain EIP-712
///         vouchers carrying a *cumulative* amount.
///
/// Accounting, per channel (payer, provider) and epoch:
/// - `funds` is the total the payer has put into the channel in this epoch (it only grows);
/// - `redeemed` is the total the provider has taken in this epoch (it only grows);
/// - what the channel still holds is `funds - redeemed`.
/// Keeping both totals cumulative makes a voucher's cumulative `amount` directly comparable.
/// Exact billing: a voucher is a credit limit, not a bill. The provider names the cumulative
/// amount it `claim`s (what the calls really cost) and a redeem pays
/// `min(claim, amount, funds) - redeemed` (nothing when that is not positive), so it can never
/// take more than it claims, than the voucher allows, or than the payer put in; replaying an
/// old voucher or claim pays nothing.
///
/// A redeem moves no tokens: it credits the provider's free balance (`balanceOf`), which the
/// provider takes out with `withdraw`. So value already served is settled the moment it is
/// redeemed, whatever the token does later (a paused or blocking token cannot hand it back to
/// the payer through `reclaim`).
///
/// Closing: `requestUnlock` starts a delay during which the provider can still redeem; after it
/// `reclaim` returns `funds - redeemed` to the payer's free balance, zeroes the channel and
/// bumps its epoch, which invalidates every voucher of the old epoch. Funding again while an
/// unlock is pending cancels the unlock.
///
/// Reputation: a channel that stayed funded and not unlocking for a while, and through which
/// real value was redeemed, is evidence of real service. Every paying redeem reports to the
/// registry the channel's service period so far, the value redeemed in it and what this redeem
/// paid; the registry adds a point when both the period and the value reach its minimums, and
/// the period then restarts (with its value at zero).
contract Escrow is ReentrancyGuard, EIP712 {
    using SafeERC20 for IERC20;

    /// @notice A payer's signed promise: `provider` may take up to `amount` (cumulative) from
    ///         the payer's channel in `epoch`.
    struct Voucher {
        address payer;
        address provider;
        uint64 epoch;
        uint256 amount;
    }

    /// @notice State of one channel (see the contract comment for the accounting).
    struct Channel {
        uint256 funds;
        uint256 redeemed;
        uint64 epoch;
        uint64 unlockAt;
        /// Start of the current service period (0: none: never funded, unlocking, or drained).
        uint64 serviceSince;
        /// Value redeemed since `serviceSince` (saturates at 2^56-1; packs in the same slot).
        uint56 periodValue;
        /// Whether the provider was ever paid from this channel (any epoch): lets the
        /// registry count distinct payers without a storage slot of its own per pair.
        bool everPaid;
    }

    /// @notice EIP-712 type hash of `Voucher`.
    bytes32 public constant VOUCHER_TYPEHASH =
        keccak256("Voucher(address payer,address provider,uint64 epoch,uint256 amount)");

    /// @notice The payment token (USDC, 6 decimals).
    IERC20 public immutable token;
    /// @notice Seconds between `requestUnlock` and the earliest `reclaim`.
    uint64 public immutable unlockDelay;
    /// @notice Registry told about paying redeems (reputation); zero disables reporting.
    IReputation public immutable registry;

    /// @notice Free (unchannelled) balance of each account.
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => Channel)) private _channels;

    /// @notice `payer` deposited `amount`; its free balance is now `balance`.
    event Deposited(address indexed payer, uint256 amount, uint256 balance);
    /// @notice `payer` withdrew `amount`; its free balance is now `balance`.
    event Withdrawn(address indexed payer, uint256 amount, uint256 balance);
    /// @notice `payer` moved `amount` into its channel to `provider`; the epoch's total is `funds`.
    event Funded(address indexed payer, address indexed provider, uint64 epoch, uint256 amount, uint256 funds);
    /// @notice `payer` asked to close its channel to `provider`; `reclaim` works from `unlockAt`.
    event UnlockRequested(address indexed payer, address indexed provider, uint64 epoch, uint64 unlockAt);
    /// @notice A pending unlock was cancelled by new funding.
    event UnlockCancelled(address indexed payer, address indexed provider, uint64 epoch);
    /// @notice `payer` took back `amount` and the channel moved to epoch `newEpoch`.
    event Reclaimed(address indexed payer, address indexed provider, uint64 newEpoch, uint256 amount);
    /// @notice `provider` was paid `paid` from `payer`'s channel; `redeemed` is the epoch's total.
    event Redeemed(address indexed payer, address indexed provider, uint64 epoch, uint256 paid, uint256 redeemed);

    /// @notice Zero amount where a positive one is needed.
    error ZeroAmount();
    /// @notice The free balance is smaller than the amount.
    error InsufficientBalance(uint256 balance, uint256 needed);
    /// @notice Provider is the zero address or the payer itself.
    error InvalidProvider();
    /// @notice The channel holds nothing to unlock.
    error EmptyChannel();
    /// @notice An unlock is already pending.
    error UnlockAlreadyRequested(uint64 unlockAt);
    /// @notice `reclaim` without a pending unlock.
    error UnlockNotRequested();
    /// @notice `reclaim` before the unlock delay has passed.
    error UnlockPending(uint64 unlockAt);
    /// @notice Only the voucher's provider may redeem it.
    error NotProvider(address caller, address provider);
    /// @notice The voucher is for another epoch of the channel.
    error WrongEpoch(uint64 voucherEpoch, uint64 channelEpoch);
    /// @notice The signature is malformed or not the payer's (wrong chain, escrow or fields).
    error BadSignature();
    /// @notice `redeemBatch` got different numbers of vouchers, signatures and claims.
    error LengthMismatch();

    constructor(IERC20 token_, uint64 unlockDelay_, IReputation registry_) EIP712("Khachapuri Escrow", "1") {
        token = token_;
        unlockDelay = unlockDelay_;
        registry = registry_;
    }

    // ----------------------------------------------------------------- free balance

    /// @notice Pulls `amount` tokens from the caller (after `approve`) into its free balance.
    function deposit(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = balanceOf[msg.sender] + amount;
        balanceOf[msg.sender] = balance;
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Deposited(msg.sender, amount, balance);
    }

    /// @notice Sends `amount` of the caller's free balance back to it.
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = balanceOf[msg.sender];
        if (balance < amount) revert InsufficientBalance(balance, amount);
        balance -= amount;
        balanceOf[msg.sender] = balance;
        token.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount, balance);
    }

    // ----------------------------------------------------------------- channels

    /// @notice Moves `amount` of the caller's free balance into its channel to `provider`.
    ///         Cancels a pending unlock of that channel.
    function fund(address provider, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (provider == address(0) || provider == msg.sender) revert InvalidProvider();
        uint256 balance = balanceOf[msg.sender];
        if (balance < amount) revert InsufficientBalance(balance, amount);
        balanceOf[msg.sender] = balance - amount;

        Channel storage c = _channels[msg.sender][provider];
        c.funds += amount;
        if (c.unlockAt != 0) {
            c.unlockAt = 0;
            c.serviceSince = 0;
            emit UnlockCancelled(msg.sender, provider, c.epoch);
        }
        if (c.serviceSince == 0) {
            c.serviceSince = uint64(block.timestamp);
            c.periodValue = 0;
        }
        emit Funded(msg.sender, provider, c.epoch, amount, c.funds);
    }

    /// @notice Starts closing the caller's channel to `provider`; the provider should redeem
    ///         its vouchers before `reclaim` becomes possible.
    function requestUnlock(address provider) external nonReentrant {
        Channel storage c = _channels[msg.sender][provider];
        if (c.funds == c.redeemed) revert EmptyChannel();
        if (c.unlockAt != 0) revert UnlockAlreadyRequested(c.unlockAt);
        uint64 unlockAt = uint64(block.timestamp) + unlockDelay;
        c.unlockAt = unlockAt;
        c.serviceSince = 0;
        c.periodValue = 0;
        emit UnlockRequested(msg.sender, provider, c.epoch, unlockAt);
    }

    /// @notice After the unlock delay, returns what the channel still holds to the caller's
    ///         free balance and starts a new epoch (old vouchers become worthless).
    function reclaim(address provider) external nonReentrant {
        Channel storage c = _channels[msg.sender][provider];
        uint64 unlockAt = c.unlockAt;
        if (unlockAt == 0) revert UnlockNotRequested();
        if (block.timestamp < unlockAt) revert UnlockPending(unlockAt);
        uint256 rest = c.funds - c.redeemed;
        uint64 newEpoch = c.epoch + 1;
        c.funds = 0;
        c.redeemed = 0;
        c.epoch = newEpoch;
        c.unlockAt = 0;
        c.serviceSince = 0;
        c.periodValue = 0;
        balanceOf[msg.sender] += rest;
        emit Reclaimed(msg.sender, provider, newEpoch, rest);
    }

    /// @notice Redeems one voucher for the cumulative amount `claim`; the caller must be its
    ///         provider. Credits `min(claim, amount, funds) - redeemed` (possibly nothing) to the
    ///         provider's free balance and returns it.
    function redeem(Voucher calldata voucher, bytes calldata signature, uint256 claim)
        external
        nonReentrant
        returns (uint256 paid)
    {
        paid = _redeem(voucher, signature, claim);
        if (paid != 0) balanceOf[msg.sender] += paid;
    }

    /// @notice Redeems many vouchers, each for its cumulative `claims[i]`, in one transaction
    ///         and credits the total to the caller's free balance. Every voucher must be valid
    ///         (the caller's, current epoch, payer's signature) or the whole batch reverts;
    ///         check with `eth_call` first. Returns the total paid.
    function redeemBatch(Voucher[] calldata vouchers, bytes[] calldata signatures, uint256[] calldata claims)
        external
        nonReentrant
        returns (uint256 paid)
    {
        if (vouchers.length != signatures.length || vouchers.length != claims.length) revert LengthMismatch();
        for (uint256 i = 0; i < vouchers.length; ++i) {
            paid += _redeem(vouchers[i], signatures[i], claims[i]);
        }
        if (paid != 0) balanceOf[msg.sender] += paid;
    }

    function _redeem(Voucher calldata v, bytes calldata signature, uint256 claim) private returns (uint256 paid) {
        if (msg.sender != v.provider) revert NotProvider(msg.sender, v.provider);
        Channel storage c = _channels[v.payer][v.provider];
        if (v.epoch != c.epoch) revert WrongEpoch(v.epoch, c.epoch);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(voucherDigest(v), signature);
        if (err != ECDSA.RecoverError.NoError || signer != v.payer || signer == address(0)) revert BadSignature();

        uint256 funds = c.funds;
        uint256 cap = v.amount < funds ? v.amount : funds;
        if (claim < cap) cap = claim;
        uint256 redeemed = c.redeemed;
        if (cap <= redeemed) return 0;
        paid = cap - redeemed;
        redeemed = cap;
        c.redeemed = redeemed;
        emit Redeemed(v.payer, v.provider, v.epoch, paid, redeemed);
        bool firstPayment = !c.everPaid;
        if (firstPayment) c.everPaid = true;
        _report(c, v, paid, redeemed == funds, firstPayment);
    }

    /// Tells the registry about a paying redeem and moves the channel's service period on.
    function _report(Channel storage c, Voucher calldata v, uint256 paid, bool drained, bool firstPayment) private {
        uint64 since = c.serviceSince;
        uint64 period;
        uint256 value;
        if (since != 0 && c.unlockAt == 0) {
            period = uint64(block.timestamp) - since;
            value = uint256(c.periodValue) + paid;
            if (value > type(uint56).max) value = type(uint56).max;
        }
        if (address(registry) != address(0)) {
            try registry.reportService(v.provider, v.payer, period, value, paid, firstPayment) returns (bool credited) {
                if (credited) {
                    since = uint64(block.timestamp);
                    value = 0;
                }
            } catch {}
        }
        if (since == 0) return;
        // A drained channel is no longer "funded": its service period ends here.
        if (drained) {
            c.serviceSince = 0;
            c.periodValue = 0;
        } else {
            c.serviceSince = since;
            c.periodValue = uint56(value);
        }
    }

    // ----------------------------------------------------------------- views

    /// @notice A channel's cumulative funds and redemptions in its current epoch, the epoch,
    ///         and when a pending unlock matures (0: none).
    function channel(address payer, address provider)
        external
        view
        returns (uint256 funds, uint256 redeemed, uint64 epoch, uint64 unlockAt)
    {
        Channel storage c = _channels[payer][provider];
        return (c.funds, c.redeemed, c.epoch, c.unlockAt);
    }

    /// @notice Start of the channel's current service period (0: none), for reputation tooling.
    function serviceSince(address payer, address provider) external view returns (uint64) {
        return _channels[payer][provider].serviceSince;
    }

    /// @notice Value redeemed in the channel's current service period, for reputation tooling.
    function periodValue(address payer, address provider) external view returns (uint256) {
        return _channels[payer][provider].periodValue;
    }

    /// @notice The EIP-712 digest a payer signs for `v` (domain: this escrow on this chain).
    function voucherDigest(Voucher calldata v) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, v.payer, v.provider, v.epoch, v.amount)));
    }

    /// @notice The EIP-712 domain separator, for signers that want it precomputed.
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
