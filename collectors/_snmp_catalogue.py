"""Built-in SNMP modules in snmp_exporter's snmp.yml format, so no MIB generator toolchain is needed.

if_mib is snmp_exporter v0.21.0's (the version Debian 12 packages, with sysUpTime); system is from its current
snmp.yml. Help texts are the generator's (the MIB DESCRIPTION up to its first sentence, then " - OID").
Generated from those snmp.yml files by a script: regenerate rather than edit when adding a MIB.
"""

from __future__ import annotations

from typing import Any


def _m(name: str, oid: str, type_: str, help_: str, index: dict[str, Any] | None = None,
       enum: dict[int, str] | None = None) -> dict[str, Any]:
    metric: dict[str, Any] = {"name": name, "oid": oid, "type": type_, "help": f"{help_} - {oid}",
                              **(index or {})}
    if enum:
        metric["enum_values"] = enum
    return metric


def _enum(text: str) -> dict[int, str]:
    words = text.split()
    return {int(number): name for number, name in zip(words[::2], words[1::2], strict=True)}


_INDEX_0: dict[str, Any] = {
    "indexes": [{"labelname": "ifIndex", "type": "gauge"}],
    "lookups": [
        {"labelname": "ifAlias", "labels": ["ifIndex"], "oid": "1.3.6.1.2.1.31.1.1.1.18", "type": "DisplayString"},
        {"labelname": "ifDescr", "labels": ["ifIndex"], "oid": "1.3.6.1.2.1.2.2.1.2", "type": "DisplayString"},
        {"labelname": "ifName", "labels": ["ifIndex"], "oid": "1.3.6.1.2.1.31.1.1.1.1", "type": "DisplayString"},
    ],
}
_INDEX_1: dict[str, Any] = {
    "indexes": [{"labelname": "sysORIndex", "type": "gauge"}],
    "lookups": [
        {"labelname": "sysORDescr", "labels": ["sysORIndex"], "oid": "1.3.6.1.2.1.1.9.1.3", "type": "DisplayString"},
    ],
}
_ENUM_0 = _enum(
    "1 other 2 regular1822 3 hdh1822 4 ddnX25 5 rfc877x25 6 ethernetCsmacd 7 iso88023Csmacd 8 "
    "iso88024TokenBus 9 iso88025TokenRing 10 iso88026Man 11 starLan 12 proteon10Mbit 13 proteon80Mbit 14 "
    "hyperchannel 15 fddi 16 lapb 17 sdlc 18 ds1 19 e1 20 basicISDN 21 primaryISDN 22 "
    "propPointToPointSerial 23 ppp 24 softwareLoopback 25 eon 26 ethernet3Mbit 27 nsip 28 slip 29 ultra "
    "30 ds3 31 sip 32 frameRelay 33 rs232 34 para 35 arcnet 36 arcnetPlus 37 atm 38 miox25 39 sonet 40 "
    "x25ple 41 iso88022llc 42 localTalk 43 smdsDxi 44 frameRelayService 45 v35 46 hssi 47 hippi 48 modem "
    "49 aal5 50 sonetPath 51 sonetVT 52 smdsIcip 53 propVirtual 54 propMultiplexor 55 ieee80212 56 "
    "fibreChannel 57 hippiInterface 58 frameRelayInterconnect 59 aflane8023 60 aflane8025 61 cctEmul 62 "
    "fastEther 63 isdn 64 v11 65 v36 66 g703at64k 67 g703at2mb 68 qllc 69 fastEtherFX 70 channel 71 "
    "ieee80211 72 ibm370parChan 73 escon 74 dlsw 75 isdns 76 isdnu 77 lapd 78 ipSwitch 79 rsrb 80 "
    "atmLogical 81 ds0 82 ds0Bundle 83 bsc 84 async 85 cnr 86 iso88025Dtr 87 eplrs 88 arap 89 propCnls 90 "
    "hostPad 91 termPad 92 frameRelayMPI 93 x213 94 adsl 95 radsl 96 sdsl 97 vdsl 98 iso88025CRFPInt 99 "
    "myrinet 100 voiceEM 101 voiceFXO 102 voiceFXS 103 voiceEncap 104 voiceOverIp 105 atmDxi 106 atmFuni "
    "107 atmIma 108 pppMultilinkBundle 109 ipOverCdlc 110 ipOverClaw 111 stackToStack 112 "
    "virtualIpAddress 113 mpc 114 ipOverAtm 115 iso88025Fiber 116 tdlc 117 gigabitEthernet 118 hdlc 119 "
    "lapf 120 v37 121 x25mlp 122 x25huntGroup 123 transpHdlc 124 interleave 125 fast 126 ip 127 "
    "docsCableMaclayer 128 docsCableDownstream 129 docsCableUpstream 130 a12MppSwitch 131 tunnel 132 "
    "coffee 133 ces 134 atmSubInterface 135 l2vlan 136 l3ipvlan 137 l3ipxvlan 138 digitalPowerline 139 "
    "mediaMailOverIp 140 dtm 141 dcn 142 ipForward 143 msdsl 144 ieee1394 145 if-gsn 146 dvbRccMacLayer "
    "147 dvbRccDownstream 148 dvbRccUpstream 149 atmVirtual 150 mplsTunnel 151 srp 152 voiceOverAtm 153 "
    "voiceOverFrameRelay 154 idsl 155 compositeLink 156 ss7SigLink 157 propWirelessP2P 158 frForward 159 "
    "rfc1483 160 usb 161 ieee8023adLag 162 bgppolicyaccounting 163 frf16MfrBundle 164 h323Gatekeeper 165 "
    "h323Proxy 166 mpls 167 mfSigLink 168 hdsl2 169 shdsl 170 ds1FDL 171 pos 172 dvbAsiIn 173 dvbAsiOut "
    "174 plc 175 nfas 176 tr008 177 gr303RDT 178 gr303IDT 179 isup 180 propDocsWirelessMaclayer 181 "
    "propDocsWirelessDownstream 182 propDocsWirelessUpstream 183 hiperlan2 184 propBWAp2Mp 185 "
    "sonetOverheadChannel 186 digitalWrapperOverheadChannel 187 aal2 188 radioMAC 189 atmRadio 190 imt "
    "191 mvl 192 reachDSL 193 frDlciEndPt 194 atmVciEndPt 195 opticalChannel 196 opticalTransport 197 "
    "propAtm 198 voiceOverCable 199 infiniband 200 teLink 201 q2931 202 virtualTg 203 sipTg 204 sipSig "
    "205 docsCableUpstreamChannel 206 econet 207 pon155 208 pon622 209 bridge 210 linegroup 211 "
    "voiceEMFGD 212 voiceFGDEANA 213 voiceDID 214 mpegTransport 215 sixToFour 216 gtp 217 pdnEtherLoop1 "
    "218 pdnEtherLoop2 219 opticalChannelGroup 220 homepna 221 gfp 222 ciscoISLvlan 223 actelisMetaLOOP "
    "224 fcipLink 225 rpr 226 qam 227 lmp 228 cblVectaStar 229 docsCableMCmtsDownstream 230 adsl2 231 "
    "macSecControlledIF 232 macSecUncontrolledIF 233 aviciOpticalEther 234 atmbond 235 voiceFGDOS 236 "
    "mocaVersion1 237 ieee80216WMAN 238 adsl2plus 239 dvbRcsMacLayer 240 dvbTdm 241 dvbRcsTdma 242 "
    "x86Laps 243 wwanPP 244 wwanPP2 245 voiceEBS 246 ifPwType 247 ilan 248 pip 249 aluELP 250 gpon 251 "
    "vdsl2 252 capwapDot11Profile 253 capwapDot11Bss 254 capwapWtpVirtualRadio 255 bits 256 "
    "docsCableUpstreamRfPort 257 cableDownstreamRfPort 258 vmwareVirtualNic 259 ieee802154 260 otnOdu 261 "
    "otnOtu 262 ifVfiType 263 g9981 264 g9982 265 g9983 266 aluEpon 267 aluEponOnu 268 aluEponPhysicalUni "
    "269 aluEponLogicalLink 270 aluGponOnu 271 aluGponPhysicalUni 272 vmwareNicTeam 277 "
    "docsOfdmDownstream 278 docsOfdmaUpstream 279 gfast 280 sdci 281 xboxWireless 282 fastdsl 283 "
    "docsCableScte55d1FwdOob 284 docsCableScte55d1RetOob 285 docsCableScte55d2DsOob 286 "
    "docsCableScte55d2UsOob 287 docsCableNdf 288 docsCableNdr 289 ptm 290 ghn 291 otnOtsi 292 otnOtuc 293 "
    "otnOduc 294 otnOtsig 295 microwaveCarrierTermination 296 microwaveRadioLinkTerminal 297 "
    "ieee8021axDrni 298 ax25 299 ieee19061nanocom 300 cpri 301 omni 302 roe 303 p2pOverLan"
)
_ENUM_1 = _enum("1 up 2 down 3 testing")
_ENUM_2 = _enum("1 up 2 down 3 testing 4 unknown 5 dormant 6 notPresent 7 lowerLayerDown")
_ENUM_3 = _enum("1 enabled 2 disabled")
_ENUM_4 = _enum("1 true 2 false")

MODULES: dict[str, dict[str, Any]] = {
    "if_mib": {
        "walk": ["1.3.6.1.2.1.2", "1.3.6.1.2.1.31.1.1"],
        "get": ["1.3.6.1.2.1.1.3.0"],
        "metrics": [
            _m("sysUpTime", "1.3.6.1.2.1.1.3", "gauge",
               "The time (in hundredths of a second) since the network management portion of the system "
               "was last re-initialized."),
            _m("ifNumber", "1.3.6.1.2.1.2.1", "gauge",
               "The number of network interfaces (regardless of their current state) present on this "
               "system."),
            _m("ifIndex", "1.3.6.1.2.1.2.2.1.1", "gauge",
               "A unique value, greater than zero, for each interface", _INDEX_0),
            _m("ifType", "1.3.6.1.2.1.2.2.1.3", "EnumAsInfo",
               "The type of interface", _INDEX_0, _ENUM_0),
            _m("ifMtu", "1.3.6.1.2.1.2.2.1.4", "gauge",
               "The size of the largest packet which can be sent/received on the interface, specified in"
               " octets", _INDEX_0),
            _m("ifSpeed", "1.3.6.1.2.1.2.2.1.5", "gauge",
               "An estimate of the interface's current bandwidth in bits per second", _INDEX_0),
            _m("ifPhysAddress", "1.3.6.1.2.1.2.2.1.6", "PhysAddress48",
               "The interface's address at its protocol sub-layer", _INDEX_0),
            _m("ifAdminStatus", "1.3.6.1.2.1.2.2.1.7", "gauge",
               "The desired state of the interface", _INDEX_0, _ENUM_1),
            _m("ifOperStatus", "1.3.6.1.2.1.2.2.1.8", "gauge",
               "The current operational state of the interface", _INDEX_0, _ENUM_2),
            _m("ifLastChange", "1.3.6.1.2.1.2.2.1.9", "gauge",
               "The value of sysUpTime at the time the interface entered its current operational state", _INDEX_0),
            _m("ifInOctets", "1.3.6.1.2.1.2.2.1.10", "counter",
               "The total number of octets received on the interface, including framing characters", _INDEX_0),
            _m("ifInUcastPkts", "1.3.6.1.2.1.2.2.1.11", "counter",
               "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were "
               "not addressed to a multicast or broadcast address at this sub-layer", _INDEX_0),
            _m("ifInNUcastPkts", "1.3.6.1.2.1.2.2.1.12", "counter",
               "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were "
               "addressed to a multicast or broadcast address at this sub-layer", _INDEX_0),
            _m("ifInDiscards", "1.3.6.1.2.1.2.2.1.13", "counter",
               "The number of inbound packets which were chosen to be discarded even though no errors "
               "had been detected to prevent their being deliverable to a higher-layer protocol", _INDEX_0),
            _m("ifInErrors", "1.3.6.1.2.1.2.2.1.14", "counter",
               "For packet-oriented interfaces, the number of inbound packets that contained errors "
               "preventing them from being deliverable to a higher-layer protocol", _INDEX_0),
            _m("ifInUnknownProtos", "1.3.6.1.2.1.2.2.1.15", "counter",
               "For packet-oriented interfaces, the number of packets received via the interface which "
               "were discarded because of an unknown or unsupported protocol", _INDEX_0),
            _m("ifOutOctets", "1.3.6.1.2.1.2.2.1.16", "counter",
               "The total number of octets transmitted out of the interface, including framing "
               "characters", _INDEX_0),
            _m("ifOutUcastPkts", "1.3.6.1.2.1.2.2.1.17", "counter",
               "The total number of packets that higher-level protocols requested be transmitted, and "
               "which were not addressed to a multicast or broadcast address at this sub-layer, "
               "including those that were discarded or not sent", _INDEX_0),
            _m("ifOutNUcastPkts", "1.3.6.1.2.1.2.2.1.18", "counter",
               "The total number of packets that higher-level protocols requested be transmitted, and "
               "which were addressed to a multicast or broadcast address at this sub-layer, including "
               "those that were discarded or not sent", _INDEX_0),
            _m("ifOutDiscards", "1.3.6.1.2.1.2.2.1.19", "counter",
               "The number of outbound packets which were chosen to be discarded even though no errors "
               "had been detected to prevent their being transmitted", _INDEX_0),
            _m("ifOutErrors", "1.3.6.1.2.1.2.2.1.20", "counter",
               "For packet-oriented interfaces, the number of outbound packets that could not be "
               "transmitted because of errors", _INDEX_0),
            _m("ifOutQLen", "1.3.6.1.2.1.2.2.1.21", "gauge",
               "The length of the output packet queue (in packets).", _INDEX_0),
            _m("ifSpecific", "1.3.6.1.2.1.2.2.1.22", "OctetString",
               "A reference to MIB definitions specific to the particular media being used to realize "
               "the interface", _INDEX_0),
            _m("ifInMulticastPkts", "1.3.6.1.2.1.31.1.1.1.2", "counter",
               "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were "
               "addressed to a multicast address at this sub-layer", _INDEX_0),
            _m("ifInBroadcastPkts", "1.3.6.1.2.1.31.1.1.1.3", "counter",
               "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were "
               "addressed to a broadcast address at this sub-layer", _INDEX_0),
            _m("ifOutMulticastPkts", "1.3.6.1.2.1.31.1.1.1.4", "counter",
               "The total number of packets that higher-level protocols requested be transmitted, and "
               "which were addressed to a multicast address at this sub-layer, including those that were"
               " discarded or not sent", _INDEX_0),
            _m("ifOutBroadcastPkts", "1.3.6.1.2.1.31.1.1.1.5", "counter",
               "The total number of packets that higher-level protocols requested be transmitted, and "
               "which were addressed to a broadcast address at this sub-layer, including those that were"
               " discarded or not sent", _INDEX_0),
            _m("ifHCInOctets", "1.3.6.1.2.1.31.1.1.1.6", "counter",
               "The total number of octets received on the interface, including framing characters", _INDEX_0),
            _m("ifHCInUcastPkts", "1.3.6.1.2.1.31.1.1.1.7", "counter",
               "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were "
               "not addressed to a multicast or broadcast address at this sub-layer", _INDEX_0),
            _m("ifHCInMulticastPkts", "1.3.6.1.2.1.31.1.1.1.8", "counter",
               "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were "
               "addressed to a multicast address at this sub-layer", _INDEX_0),
            _m("ifHCInBroadcastPkts", "1.3.6.1.2.1.31.1.1.1.9", "counter",
               "The number of packets, delivered by this sub-layer to a higher (sub-)layer, which were "
               "addressed to a broadcast address at this sub-layer", _INDEX_0),
            _m("ifHCOutOctets", "1.3.6.1.2.1.31.1.1.1.10", "counter",
               "The total number of octets transmitted out of the interface, including framing "
               "characters", _INDEX_0),
            _m("ifHCOutUcastPkts", "1.3.6.1.2.1.31.1.1.1.11", "counter",
               "The total number of packets that higher-level protocols requested be transmitted, and "
               "which were not addressed to a multicast or broadcast address at this sub-layer, "
               "including those that were discarded or not sent", _INDEX_0),
            _m("ifHCOutMulticastPkts", "1.3.6.1.2.1.31.1.1.1.12", "counter",
               "The total number of packets that higher-level protocols requested be transmitted, and "
               "which were addressed to a multicast address at this sub-layer, including those that were"
               " discarded or not sent", _INDEX_0),
            _m("ifHCOutBroadcastPkts", "1.3.6.1.2.1.31.1.1.1.13", "counter",
               "The total number of packets that higher-level protocols requested be transmitted, and "
               "which were addressed to a broadcast address at this sub-layer, including those that were"
               " discarded or not sent", _INDEX_0),
            _m("ifLinkUpDownTrapEnable", "1.3.6.1.2.1.31.1.1.1.14", "gauge",
               "Indicates whether linkUp/linkDown traps should be generated for this interface", _INDEX_0, _ENUM_3),
            _m("ifHighSpeed", "1.3.6.1.2.1.31.1.1.1.15", "gauge",
               "An estimate of the interface's current bandwidth in units of 1,000,000 bits per second", _INDEX_0),
            _m("ifPromiscuousMode", "1.3.6.1.2.1.31.1.1.1.16", "gauge",
               "This object has a value of false(2) if this interface only accepts packets/frames that "
               "are addressed to this station", _INDEX_0, _ENUM_4),
            _m("ifConnectorPresent", "1.3.6.1.2.1.31.1.1.1.17", "gauge",
               "This object has the value 'true(1)' if the interface sublayer has a physical connector "
               "and the value 'false(2)' otherwise.", _INDEX_0, _ENUM_4),
            _m("ifCounterDiscontinuityTime", "1.3.6.1.2.1.31.1.1.1.19", "gauge",
               "The value of sysUpTime on the most recent occasion at which any one or more of this "
               "interface's counters suffered a discontinuity", _INDEX_0),
        ],
    },
    "system": {
        "walk": ["1.3.6.1.2.1.1"],
        "metrics": [
            _m("sysDescr", "1.3.6.1.2.1.1.1", "DisplayString",
               "A textual description of the entity"),
            _m("sysObjectID", "1.3.6.1.2.1.1.2", "OctetString",
               "The vendor's authoritative identification of the network management subsystem contained "
               "in the entity"),
            _m("sysUpTime", "1.3.6.1.2.1.1.3", "gauge",
               "The time (in hundredths of a second) since the network management portion of the system "
               "was last re-initialized."),
            _m("sysContact", "1.3.6.1.2.1.1.4", "DisplayString",
               "The textual identification of the contact person for this managed node, together with "
               "information on how to contact this person"),
            _m("sysName", "1.3.6.1.2.1.1.5", "DisplayString",
               "An administratively-assigned name for this managed node"),
            _m("sysLocation", "1.3.6.1.2.1.1.6", "DisplayString",
               "The physical location of this node (e.g., 'telephone closet, 3rd floor')"),
            _m("sysServices", "1.3.6.1.2.1.1.7", "gauge",
               "A value which indicates the set of services that this entity may potentially offer"),
            _m("sysORLastChange", "1.3.6.1.2.1.1.8", "gauge",
               "The value of sysUpTime at the time of the most recent change in state or value of any "
               "instance of sysORID."),
            _m("sysORIndex", "1.3.6.1.2.1.1.9.1.1", "gauge",
               "The auxiliary variable used for identifying instances of the columnar objects in the "
               "sysORTable.", _INDEX_1),
            _m("sysORID", "1.3.6.1.2.1.1.9.1.2", "OctetString",
               "An authoritative identification of a capabilities statement with respect to various MIB "
               "modules supported by the local SNMP application acting as a command responder.", _INDEX_1),
            _m("sysORDescr", "1.3.6.1.2.1.1.9.1.3", "DisplayString",
               "A textual description of the capabilities identified by the corresponding instance of "
               "sysORID.", _INDEX_1),
            _m("sysORUpTime", "1.3.6.1.2.1.1.9.1.4", "gauge",
               "The value of sysUpTime at the time this conceptual row was last instantiated.", _INDEX_1),
        ],
    },
}
