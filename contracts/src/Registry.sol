// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {IReputation} from "./IReputation.sol";
import {OperatorConsent} from "./OperatorConsent.sol";

/// @title Registry
/// @notice Provider names, their records, pricing tables and reputation.
///
/// Names: `node = keccak256(bytes(name))`, first come first served; a name is a DNS label
/// (1-63 of `a-z 0-9 -`, not starting or ending with `-`) because gateways serve providers
/// at `{name}.{domain}`. The owner updates, transfers or drops it.
///
/// Operator consent (see `OperatorConsent`): a record only ever names an operator that agreed
/// to it, and only that operator publishes its X25519 key. Registering, changing the
/// operator or the key, and transferring the name are done by the operator itself, or carry
/// its signature (`...WithConsent`); so nobody borrows another's reputation or publishes a
/// key in another's name.
///
/// ENS-style readers `addr(node)` (the operator, the key the node signs with) and
/// `text(node, key)` for `url`, `pubkey` (0x-hex X25519 key), `regions` (comma-separated),
/// `contact`, `attestation` and `p2p` (libp2p multiaddrs) let ENS tooling read records.
///
/// Pricing tables: prices in token base units scaled by 1e6 (so 1 = a millionth of a base
/// unit) per request, per millisecond of execution and per MB of response. Anyone owning a
/// name creates one (id + event); names subscribe to one table at a time; a table is deleted
/// when its last subscriber leaves.
///
/// Reputation, per operator address, from the escrow's reports of paying redeems: total value
/// redeemed, distinct payers that paid, and points. A point needs a channel that stayed funded
/// and not unlocking for at least `minServicePeriod` *and* had at least `minServiceValue`
/// redeemed in that period, so faking one costs real money moved through a channel (many
/// throwaway channels with dust earn nothing).
contract Registry is IReputation, OperatorConsent {
    using EnumerableSet for EnumerableSet.Bytes32Set;
    using EnumerableSet for EnumerableSet.UintSet;

    /// @notice A provider's record.
    struct Record {
        address owner;
        address operator;
        string name;
        string url;
        bytes32 pubkey;
        string regions;
        string contact;
        string attestation;
        uint256 pricingTable;
        /// Reputation points of the operator.
        uint256 reputation;
        /// Distinct payers that paid the operator through the escrow.
        uint256 payers;
        /// Total value (token base units) the operator redeemed through the escrow.
        uint256 valueRedeemed;
    }

    /// @notice A pricing table (prices scaled by 1e6, see the contract comment).
    struct PricingTable {
        uint256 perRequest;
        uint256 perMs;
        uint256 perMb;
        address creator;
        uint256 subscribers;
    }

    struct StoredRecord {
        address owner;
        address operator;
        string name;
        string url;
        bytes32 pubkey;
        string regions;
        string contact;
        string attestation;
        uint256 pricingTable;
        /// libp2p multiaddrs (space-separated, each ending in `/p2p/<peer id>`).
        string p2p;
    }

    /// @notice Seconds a channel must stay funded (since its last credit) to earn a point.
    uint64 public immutable minServicePeriod;
    /// @notice Value (token base units) that must be redeemed in such a period to earn a point.
    uint256 public immutable minServiceValue;
    /// @notice Deployer, allowed once to name the escrow.
    address public immutable admin;
    /// @notice The only contract allowed to report service.
    address public escrow;
    /// @notice Reputation points of each operator address.
    mapping(address => uint256) public reputationOf;
    /// @notice Distinct payers that paid each operator address.
    mapping(address => uint256) public payersOf;
    /// @notice Total value each operator address redeemed through the escrow.
    mapping(address => uint256) public valueRedeemedOf;
    /// @notice How many names each address owns (owning one allows creating tables).
    mapping(address => uint256) public namesOwned;
    /// @notice Id the next pricing table gets (ids start at 1; 0 means "no table").
    uint256 public nextTableId = 1;

    mapping(bytes32 => StoredRecord) private _records;
    mapping(uint256 => PricingTable) private _tables;
    EnumerableSet.Bytes32Set private _nodes;
    EnumerableSet.UintSet private _tableIds;

    /// @notice `name` was claimed by `owner`.
    event Registered(bytes32 indexed node, string name, address indexed owner, address operator);
    /// @notice The name changed hands.
    event Transferred(bytes32 indexed node, address indexed from, address indexed to);
    /// @notice The name was released; anyone may claim it again.
    event Dropped(bytes32 indexed node, string name);
    /// @notice ENS: the address record changed.
    event AddrChanged(bytes32 indexed node, address a);
    /// @notice ENS: a text record changed.
    event TextChanged(bytes32 indexed node, string indexed indexedKey, string key, string value);
    /// @notice The record's attestation CID changed.
    event AttestationChanged(bytes32 indexed node, string cid);
    /// @notice A pricing table was created.
    event TableCreated(uint256 indexed id, address indexed creator, uint256 perRequest, uint256 perMs, uint256 perMb);
    /// @notice A pricing table lost its last subscriber and was deleted.
    event TableDeleted(uint256 indexed id);
    /// @notice `node` now follows table `id`.
    event Subscribed(bytes32 indexed node, uint256 indexed id);
    /// @notice `node` left table `id`.
    event Unsubscribed(bytes32 indexed node, uint256 indexed id);
    /// @notice The escrow was named (once).
    event EscrowSet(address escrow);
    /// @notice `provider` earned a point for serving `payer` for `period` seconds with `value`
    ///         redeemed in them; it now has `reputation` points.
    event ReputationIncreased(
        address indexed provider, address indexed payer, uint64 period, uint256 value, uint256 reputation
    );

    /// @notice The name is not a DNS label.
    error InvalidName();
    /// @notice Someone already owns the name.
    error NameTaken(bytes32 node);
    /// @notice The name is not registered.
    error UnknownName(bytes32 node);
    /// @notice Only the name's owner may do this.
    error NotOwner(bytes32 node, address caller);
    /// @notice Zero address where an account is needed.
    error ZeroAddress();
    /// @notice Only addresses that own a name may create tables.
    error NotRegistered(address caller);
    /// @notice No pricing table with that id.
    error UnknownTable(uint256 id);
    /// @notice The name follows no table.
    error NotSubscribed(bytes32 node);
    /// @notice Only the admin may do this, once.
    error NotAdmin();
    /// @notice The escrow is already set.
    error EscrowAlreadySet();
    /// @notice Only the escrow may report service.
    error NotEscrow();

    constructor(uint64 minServicePeriod_, uint256 minServiceValue_) {
        minServicePeriod = minServicePeriod_;
        minServiceValue = minServiceValue_;
        admin = msg.sender;
    }

    /// @notice Names the escrow whose reports earn reputation. Admin only, once.
    function setEscrow(address escrow_) external {
        if (msg.sender != admin) revert NotAdmin();
        if (escrow != address(0)) revert EscrowAlreadySet();
        if (escrow_ == address(0)) revert ZeroAddress();
        escrow = escrow_;
        emit EscrowSet(escrow_);
    }

    // ----------------------------------------------------------------- names

    modifier onlyOwner(bytes32 node) {
        address owner = _records[node].owner;
        if (owner == address(0)) revert UnknownName(node);
        if (owner != msg.sender) revert NotOwner(node, msg.sender);
        _;
    }

    /// @notice The node of `name`.
    function nodeOf(string calldata name) public pure returns (bytes32) {
        return keccak256(bytes(name));
    }

    /// @notice Claims `name` for the caller with its record. First come, first served. The
    ///         caller must be the operator (an owner that is not uses `registerWithConsent`).
    function register(
        string calldata name,
        address operator,
        string calldata url,
        bytes32 pubkey,
        string calldata regions,
        string calldata contact
    ) external returns (bytes32 node) {
        _requireOperator(operator);
        node = _claim(name, operator);
        _setAll(node, operator, url, pubkey, regions, contact);
    }

    /// @notice `register` for an owner that is not the operator, with the operator's consent
    ///         to (node, caller, operator, pubkey).
    function registerWithConsent(
        string calldata name,
        address operator,
        string calldata url,
        bytes32 pubkey,
        string calldata regions,
        string calldata contact,
        Consent calldata consent
    ) external returns (bytes32 node) {
        node = _claim(name, operator);
        _useConsent(node, msg.sender, operator, pubkey, consent);
        _setAll(node, operator, url, pubkey, regions, contact);
    }

    /// Validates `name` and makes the caller its owner (the record's fields come next).
    function _claim(string calldata name, address operator) private returns (bytes32 node) {
        if (!_validName(bytes(name))) revert InvalidName();
        if (operator == address(0)) revert ZeroAddress();
        node = keccak256(bytes(name));
        if (_records[node].owner != address(0)) revert NameTaken(node);
        StoredRecord storage r = _records[node];
        r.owner = msg.sender;
        r.name = name;
        _nodes.add(node);
        namesOwned[msg.sender] += 1;
        emit Registered(node, name, msg.sender, operator);
    }

    /// @notice Replaces the record's operator, url, key, regions and contact at once. A new
    ///         operator or key needs the operator as caller (else `updateWithConsent`).
    function update(
        bytes32 node,
        address operator,
        string calldata url,
        bytes32 pubkey,
        string calldata regions,
        string calldata contact
    ) external onlyOwner(node) {
        if (operator == address(0)) revert ZeroAddress();
        StoredRecord storage r = _records[node];
        if (operator != r.operator || pubkey != r.pubkey) _requireOperator(operator);
        _setAll(node, operator, url, pubkey, regions, contact);
    }

    /// @notice `update` with the (new) operator's consent to its key and the caller as owner.
    function updateWithConsent(
        bytes32 node,
        address operator,
        string calldata url,
        bytes32 pubkey,
        string calldata regions,
        string calldata contact,
        Consent calldata consent
    ) external onlyOwner(node) {
        if (operator == address(0)) revert ZeroAddress();
        _useConsent(node, msg.sender, operator, pubkey, consent);
        _setAll(node, operator, url, pubkey, regions, contact);
    }

    /// @notice Sets the operator address (`addr`); the new operator must be the caller (it
    ///         then vouches for the record's current key), else `setOperatorWithConsent`.
    function setOperator(bytes32 node, address operator) external onlyOwner(node) {
        if (operator == address(0)) revert ZeroAddress();
        _requireOperator(operator);
        _records[node].operator = operator;
        emit AddrChanged(node, operator);
    }

    /// @notice `setOperator` with the new operator's consent to the record's current key.
    function setOperatorWithConsent(bytes32 node, address operator, Consent calldata consent) external onlyOwner(node) {
        if (operator == address(0)) revert ZeroAddress();
        _useConsent(node, msg.sender, operator, _records[node].pubkey, consent);
        _records[node].operator = operator;
        emit AddrChanged(node, operator);
    }

    /// @notice Sets the endpoint URL (`text(node, "url")`).
    function setUrl(bytes32 node, string calldata url) external onlyOwner(node) {
        _records[node].url = url;
        emit TextChanged(node, "url", "url", url);
    }

    /// @notice Sets the X25519 key specs are sealed to (`text(node, "pubkey")`). Only the
    ///         operator, who holds the key, may (an owner that is not: `setPubkeyWithConsent`).
    function setPubkey(bytes32 node, bytes32 pubkey) external {
        address operator = _records[node].operator;
        if (operator == address(0)) revert UnknownName(node);
        _requireOperator(operator);
        _records[node].pubkey = pubkey;
        emit TextChanged(node, "pubkey", "pubkey", _hex(pubkey));
    }

    /// @notice `setPubkey` by the owner with the operator's consent to the new key.
    function setPubkeyWithConsent(bytes32 node, bytes32 pubkey, Consent calldata consent) external onlyOwner(node) {
        _useConsent(node, msg.sender, _records[node].operator, pubkey, consent);
        _records[node].pubkey = pubkey;
        emit TextChanged(node, "pubkey", "pubkey", _hex(pubkey));
    }

    /// @notice Sets the comma-separated regions (`text(node, "regions")`).
    function setRegions(bytes32 node, string calldata regions) external onlyOwner(node) {
        _records[node].regions = regions;
        emit TextChanged(node, "regions", "regions", regions);
    }

    /// @notice Sets the contact (`text(node, "contact")`).
    function setContact(bytes32 node, string calldata contact) external onlyOwner(node) {
        _records[node].contact = contact;
        emit TextChanged(node, "contact", "contact", contact);
    }

    /// @notice Sets the attestation CID (TEE evidence on IPFS).
    function setAttestation(bytes32 node, string calldata cid) external onlyOwner(node) {
        _records[node].attestation = cid;
        emit AttestationChanged(node, cid);
    }

    /// @notice Sets where publishers reach the node over libp2p (`text(node, "p2p")`):
    ///         space-separated multiaddrs ending in `/p2p/<peer id>`. Owner-set like the URL:
    ///         a publisher still checks that whoever answers there attests the operator's keys.
    function setP2p(bytes32 node, string calldata addrs) external onlyOwner(node) {
        _records[node].p2p = addrs;
        emit TextChanged(node, "p2p", "p2p", addrs);
    }

    /// @notice Gives the name to `to`. The operator consented to the current owner only, so
    ///         the caller or `to` must be the operator (else `transferWithConsent`).
    function transfer(bytes32 node, address to) external onlyOwner(node) {
        if (to == address(0)) revert ZeroAddress();
        address operator = _records[node].operator;
        if (to != operator) _requireOperator(operator);
        _transfer(node, to);
    }

    /// @notice `transfer` with the operator's consent to `to` as the new owner.
    function transferWithConsent(bytes32 node, address to, Consent calldata consent) external onlyOwner(node) {
        if (to == address(0)) revert ZeroAddress();
        StoredRecord storage r = _records[node];
        _useConsent(node, to, r.operator, r.pubkey, consent);
        _transfer(node, to);
    }

    function _transfer(bytes32 node, address to) private {
        _records[node].owner = to;
        namesOwned[msg.sender] -= 1;
        namesOwned[to] += 1;
        emit Transferred(node, msg.sender, to);
    }

    /// @notice Releases the name (leaving its pricing table first).
    function drop(bytes32 node) external onlyOwner(node) {
        if (_records[node].pricingTable != 0) _unsubscribe(node);
        string memory name = _records[node].name;
        delete _records[node];
        _nodes.remove(node);
        namesOwned[msg.sender] -= 1;
        emit Dropped(node, name);
    }

    // ----------------------------------------------------------------- pricing tables

    /// @notice Creates a pricing table (caller must own a name) and returns its id.
    function createTable(uint256 perRequest, uint256 perMs, uint256 perMb) external returns (uint256 id) {
        if (namesOwned[msg.sender] == 0) revert NotRegistered(msg.sender);
        id = nextTableId++;
        _tables[id] = PricingTable(perRequest, perMs, perMb, msg.sender, 0);
        _tableIds.add(id);
        emit TableCreated(id, msg.sender, perRequest, perMs, perMb);
    }

    /// @notice Makes `node` follow table `id`, leaving its previous table.
    function subscribe(bytes32 node, uint256 id) external onlyOwner(node) {
        if (!_tableIds.contains(id)) revert UnknownTable(id);
        uint256 current = _records[node].pricingTable;
        if (current == id) return;
        if (current != 0) _unsubscribe(node);
        _records[node].pricingTable = id;
        _tables[id].subscribers += 1;
        emit Subscribed(node, id);
    }

    /// @notice Makes `node` leave its table; the table is deleted if nobody follows it.
    function unsubscribe(bytes32 node) external onlyOwner(node) {
        if (_records[node].pricingTable == 0) revert NotSubscribed(node);
        _unsubscribe(node);
    }

    function _unsubscribe(bytes32 node) private {
        uint256 id = _records[node].pricingTable;
        _records[node].pricingTable = 0;
        emit Unsubscribed(node, id);
        uint256 left = _tables[id].subscribers - 1;
        if (left == 0) {
            delete _tables[id];
            _tableIds.remove(id);
            emit TableDeleted(id);
        } else {
            _tables[id].subscribers = left;
        }
    }

    // ----------------------------------------------------------------- reputation

    /// @inheritdoc IReputation
    function reportService(
        address provider,
        address payer,
        uint64 period,
        uint256 periodValue,
        uint256 paid,
        bool firstPayment
    ) external returns (bool credited) {
        if (msg.sender != escrow) revert NotEscrow();
        if (paid != 0) {
            valueRedeemedOf[provider] += paid;
            if (firstPayment) payersOf[provider] += 1;
        }
        // No service period (unlocking, drained), too short, or too little value: no point.
        if (period == 0 || period < minServicePeriod || periodValue < minServiceValue) return false;
        uint256 rep = reputationOf[provider] + 1;
        reputationOf[provider] = rep;
        emit ReputationIncreased(provider, payer, period, periodValue, rep);
        return true;
    }

    // ----------------------------------------------------------------- views

    /// @notice ENS address record: the operator (zero when unregistered).
    function addr(bytes32 node) external view returns (address) {
        return _records[node].operator;
    }

    /// @notice ENS text record: `url`, `pubkey`, `regions`, `contact`, `attestation`, `p2p` ("" otherwise).
    function text(bytes32 node, string calldata key) external view returns (string memory) {
        StoredRecord storage r = _records[node];
        bytes32 k = keccak256(bytes(key));
        if (k == keccak256("url")) return r.url;
        if (k == keccak256("pubkey")) return r.owner == address(0) ? "" : _hex(r.pubkey);
        if (k == keccak256("regions")) return r.regions;
        if (k == keccak256("contact")) return r.contact;
        if (k == keccak256("attestation")) return r.attestation;
        if (k == keccak256("p2p")) return r.p2p;
        return "";
    }

    /// @notice ERC-165 for ENS resolver profiles: addr(bytes32) and text(bytes32,string).
    function supportsInterface(bytes4 id) external pure returns (bool) {
        return id == 0x01ffc9a7 || id == 0x3b3b57de || id == 0x59d1d43c;
    }

    /// @notice The full record of `node` (owner zero when unregistered).
    function record(bytes32 node) public view returns (Record memory r) {
        StoredRecord storage s = _records[node];
        r.owner = s.owner;
        r.operator = s.operator;
        r.name = s.name;
        r.url = s.url;
        r.pubkey = s.pubkey;
        r.regions = s.regions;
        r.contact = s.contact;
        r.attestation = s.attestation;
        r.pricingTable = s.pricingTable;
        if (s.owner != address(0)) {
            r.reputation = reputationOf[s.operator];
            r.payers = payersOf[s.operator];
            r.valueRedeemed = valueRedeemedOf[s.operator];
        }
    }

    /// @notice Every registered node.
    function nodes() external view returns (bytes32[] memory) {
        return _nodes.values();
    }

    /// @notice Number of registered names.
    function nodeCount() external view returns (uint256) {
        return _nodes.length();
    }

    /// @notice A pricing table (creator zero when it does not exist).
    function table(uint256 id) external view returns (PricingTable memory) {
        return _tables[id];
    }

    /// @notice Ids of every live pricing table.
    function tableIds() external view returns (uint256[] memory) {
        return _tableIds.values();
    }

    // ----------------------------------------------------------------- internals

    function _setAll(
        bytes32 node,
        address operator,
        string calldata url,
        bytes32 pubkey,
        string calldata regions,
        string calldata contact
    ) private {
        StoredRecord storage r = _records[node];
        r.operator = operator;
        r.url = url;
        r.pubkey = pubkey;
        r.regions = regions;
        r.contact = contact;
        emit AddrChanged(node, operator);
        emit TextChanged(node, "url", "url", url);
        emit TextChanged(node, "pubkey", "pubkey", _hex(pubkey));
        emit TextChanged(node, "regions", "regions", regions);
        emit TextChanged(node, "contact", "contact", contact);
    }

    function _validName(bytes memory n) private pure returns (bool) {
        uint256 len = n.length;
        if (len == 0 || len > 63) return false;
        if (n[0] == "-" || n[len - 1] == "-") return false;
        for (uint256 i = 0; i < len; ++i) {
            bytes1 c = n[i];
            bool ok = (c >= "a" && c <= "z") || (c >= "0" && c <= "9") || c == "-";
            if (!ok) return false;
        }
        return true;
    }

    function _hex(bytes32 value) private pure returns (string memory) {
        bytes memory digits = "0123456789abcdef";
        bytes memory out = new bytes(66);
        out[0] = "0";
        out[1] = "x";
        for (uint256 i = 0; i < 32; ++i) {
            out[2 + 2 * i] = digits[uint8(value[i]) >> 4];
            out[3 + 2 * i] = digits[uint8(value[i]) & 0x0f];
        }
        return string(out);
    }
}
