// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice What the escrow tells the registry after a provider redeems from a channel.
interface IReputation {
    /// @notice Reports that `provider` was paid from `payer`'s channel, which had stayed
    ///         funded and not unlocking for `period` seconds since its last credit.
    /// @return credited true when the registry added a reputation point (the escrow then
    ///         restarts the channel's service period).
    function reportService(address provider, address payer, uint64 period) external returns (bool credited);
}
