// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice What the escrow tells the registry after each paying redeem, so reputation rests on
///         value really redeemed through funded channels.
interface IReputation {
    /// @notice Reports that `provider` was paid `paid` from `payer`'s channel. `period` is how
    ///         long the channel has stayed funded and not unlocking since its last credit (0:
    ///         not in a service period) and `periodValue` the value redeemed in that period,
    ///         this redeem included. `firstPayment` is true the first time this payer ever
    ///         pays this provider through the escrow (so the registry counts distinct payers).
    /// @return credited true when the registry added a reputation point (the escrow then
    ///         restarts the channel's service period, with its value at zero).
    function reportService(
        address provider,
        address payer,
        uint64 period,
        uint256 periodValue,
        uint256 paid,
        bool firstPayment
    ) external returns (bool credited);
}
