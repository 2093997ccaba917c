// Known answers for CPython's `json.dumps(json.loads(body), sort_keys=True)`
// and the TTS checksum over it: data only, included by the signer's tests
// (canonical/pyjson_tests.rs) and by the fake TTS verifier's tests
// (fake/tts.rs), which share no code.

/// Produced once with CPython 3.11 (see /tmp corpus script in the commit message):
///   out = json.dumps(json.loads(body), sort_keys=True)
///   print(json.dumps([body, out, hashlib.sha256(out.encode()).hexdigest()]))
pub const KNOWN: &[(&str, &str, &str)] = &[
    (
        r##"{}"##,
        r##"{}"##,
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    ),
    (
        r##"[]"##,
        r##"[]"##,
        "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
    ),
    (
        r##"{"a": 1}"##,
        r##"{"a": 1}"##,
        "f9d86028c6e0d64e225186f96acb69338b2c59764df79162107f5c4bb34d1310",
    ),
    (
        r##"{"b":1,"a":2}"##,
        r##"{"a": 2, "b": 1}"##,
        "21501dbaf73f5223934d22283f01caff4132bc1de4a9550c1ed0dffeb397a323",
    ),
    (
        r##"{"a":{"d":1,"c":[3,2,{"z":0,"y":null}]}}"##,
        r##"{"a": {"c": [3, 2, {"y": null, "z": 0}], "d": 1}}"##,
        "82014a1fa723e2aa6487ba4ce11a4beafded41cace33c7b39f2958077d470002",
    ),
    (
        r##"{"n":-0}"##,
        r##"{"n": 0}"##,
        "3a7596abc0fb02ee1c4e406fd2004f507eac5f2dcfe27ea91d649e5a097d7541",
    ),
    (
        r##"{"f":-0.0}"##,
        r##"{"f": -0.0}"##,
        "6756a17782ba00f140f3b18629896e921e273bac8a4718f91c36ffcff174fecf",
    ),
    (
        r##"{"f":0.0}"##,
        r##"{"f": 0.0}"##,
        "44622e593474a686aa6dbaba271ad5e3bf7638e46abe4435c437712782eb7423",
    ),
    (
        r##"{"big":1e400}"##,
        r##"{"big": Infinity}"##,
        "4c1a263aa7a773ff6079e6809c4bcd6f947b69ba77980762cfe199001bd6c58b",
    ),
    (
        r##"{"neg":-1e400}"##,
        r##"{"neg": -Infinity}"##,
        "7d01ad1c56266747ed74e667f55d5c293a7c5a1de68aa5134f2339d8fa836817",
    ),
    (
        r##"{"tiny":1e-400}"##,
        r##"{"tiny": 0.0}"##,
        "9b0bf78c9c30fd6492b175809d20d47dad7ff603e404b75004cd0f9bbaf7cf62",
    ),
    (
        r##"{"e":1E5}"##,
        r##"{"e": 100000.0}"##,
        "01077a937b709a966be96231067a7ce438a09b0132fd8f5bd7f07176c4eb902f",
    ),
    (
        r##"{"p":0.1}"##,
        r##"{"p": 0.1}"##,
        "c7fc38ee782bd2f8aa7bc215fd3d9de3df4b3a40c5d67a2827ff7065164ac706",
    ),
    (
        r##"{"x":1e16}"##,
        r##"{"x": 1e+16}"##,
        "c738fb6e0973f8614791dc36eef67233bec8581504eb14baec1516cb92b5bda3",
    ),
    (
        r##"{"x":1e15}"##,
        r##"{"x": 1000000000000000.0}"##,
        "c849dfae1f99d1e164366bd969d33bd763a73a214fef2744b55e28776c5d644b",
    ),
    (
        r##"{"x":123456789012345678}"##,
        r##"{"x": 123456789012345678}"##,
        "5768bee6577fc512d5e08681b955d338378feaa2eb57d0ad8f445fbef4fe30ff",
    ),
    (
        r##"{"x":123456789012345678.0}"##,
        r##"{"x": 1.2345678901234568e+17}"##,
        "2e2b95c80cde6ef44191d16772496acc1583f62442bbd11c992cf28d59dd98b7",
    ),
    (
        r##"{"i":123456789012345678901234567890}"##,
        r##"{"i": 123456789012345678901234567890}"##,
        "1fa37177a980dcb9799eb1dc5ef354ea4f1fdec8286f1bd1ff06c1347cb4c7a1",
    ),
    (
        r##"{"m":5e-324}"##,
        r##"{"m": 5e-324}"##,
        "5c9740cf9e31cf3e8f930f81495402e58798ad8c006c6f91875e2e19708d930d",
    ),
    (
        r##"{"M":1.7976931348623157e308}"##,
        r##"{"M": 1.7976931348623157e+308}"##,
        "84255ed62386ae8d9fe77ef447398f2a3640f70d1e7577097b49683daaba1f11",
    ),
    (
        r##"{"q":0.0001}"##,
        r##"{"q": 0.0001}"##,
        "067b99e4e7b7051cf50a1cd263edba203cc7d2c81d314d0ee296510d892c505a",
    ),
    (
        r##"{"q":0.00001}"##,
        r##"{"q": 1e-05}"##,
        "fa41ebec453c1aa2ca72fddfb857cd5d10289a865b3fa32249f6ffd0ed8d7c2c",
    ),
    (
        r##"{"q":1.5e-7}"##,
        r##"{"q": 1.5e-07}"##,
        "890559f082a2f4b261e26ded82c76d31d6b0ea97174709fc93df40591eea1646",
    ),
    (
        r##"{"q":-2.5E+20}"##,
        r##"{"q": -2.5e+20}"##,
        "7427591e14720cf06a413d4928ce16a1bfe886c738902901326d37af17f61696",
    ),
    (
        r##"{"q":100.0}"##,
        r##"{"q": 100.0}"##,
        "aaadea8940b252afe18fdd8658d1f3b60a85411d91ae748299dc5d2fe3116819",
    ),
    (
        r##"{"q":3.14159265358979323846}"##,
        r##"{"q": 3.141592653589793}"##,
        "6dd55dac8eb64e4f48d993c26a629df47c83e79e7bf8450cef96b33331ed66ba",
    ),
    (
        r##"{"dup":1,"dup":2}"##,
        r##"{"dup": 2}"##,
        "8fa420de89c113958ddc871ad4b6f946defd4cdd28bf41d86ff55858b35bc848",
    ),
    (
        r##"{"a":1,"b":{"x":1,"x":[1]},"a":"last"}"##,
        r##"{"a": "last", "b": {"x": [1]}}"##,
        "6ab83044384ef2647b22f173a905c1f1808242d2fac6829898418e7c8ff4abb8",
    ),
    (
        r##"{"s":"\u007f"}"##,
        r##"{"s": "\u007f"}"##,
        "11519672b9aea44d22b50aac9d180c829c0c314c790a66e1ee88e6de1f9e35e2",
    ),
    (
        r##"{"s":"\u2028\u2029"}"##,
        r##"{"s": "\u2028\u2029"}"##,
        "2e9d76790be3ca3ac814e93641e5575734e46ecf95ca56c6cbffb3960934eb39",
    ),
    (
        r##"{"":"empty key"}"##,
        r##"{"": "empty key"}"##,
        "46fa58c1dfb61d573b9a1817c159b67589e45275ffd7c9dd9f14a3c3ff3501cb",
    ),
    (
        r##"{"A":1,"a":2,"B":3}"##,
        r##"{"A": 1, "B": 3, "a": 2}"##,
        "584d91aa3551bac919db03a554960c04d7c31349624dd96d779ecb9dc2e145e2",
    ),
    (
        r##"{"\u00e9":1,"e":2,"z":3,"\u00ff":4}"##,
        r##"{"e": 2, "z": 3, "\u00e9": 1, "\u00ff": 4}"##,
        "e7dee171f147518e164be61c534958ac81ae2dc21cd59a28a91238424b46bc98",
    ),
    (
        r##"{"s":"café 😀 中"}"##,
        r##"{"s": "caf\u00e9 \ud83d\ude00 \u4e2d"}"##,
        "f09b47b89270bb7fd14efa1513d87aefb1db7103410c022b92be77ce6b9af01b",
    ),
    (
        r##"{"s":"\ud83d\ude00"}"##,
        r##"{"s": "\ud83d\ude00"}"##,
        "9c956e39e6c6e3872969b7f23f9067530818cc1277057c77aaa162f5b3524146",
    ),
    (
        r##"{"s":"tab\tnl\ncr\rbs\bff\f"}"##,
        r##"{"s": "tab\tnl\ncr\rbs\bff\f"}"##,
        "f1731fa633321a5bde3ee91a35bdf0f10c6fcd0097245f68fc510fc72f23daf1",
    ),
    (
        r##"{"s":"\u0000\u001f\u0001"}"##,
        r##"{"s": "\u0000\u001f\u0001"}"##,
        "70c37f784493947c3d611468423516a39866582306a726bce2d76e324ce3f7e5",
    ),
    (
        r##"{"s":"quote \" back \\ slash / and \/"}"##,
        r##"{"s": "quote \" back \\ slash / and /"}"##,
        "663812827c8d0462cf3f1658f590b14e656ee96b3bb3542459b3d9a13161d070",
    ),
    (
        r##"[1, 2.5, true, false, null, "x"]"##,
        r##"[1, 2.5, true, false, null, "x"]"##,
        "1a84178f60c01fbab11b76eb3530bf378b9798e1a3d4deb67c143f970dba10f0",
    ),
    (
        r##"{"k":[[],[{}],{"a":[]}]}"##,
        r##"{"k": [[], [{}], {"a": []}]}"##,
        "fcd7eb20b3b3afaa1fc3566292c5b429f823fd0a4ad7a007eb13e655bb1b6f30",
    ),
    (
        r##"{"secret":"s3cr3t","identifire":"abc","client_ver":"1.0","ip_address":"10.0.0.1","mac_address":"-"}"##,
        r##"{"client_ver": "1.0", "identifire": "abc", "ip_address": "10.0.0.1", "mac_address": "-", "secret": "s3cr3t"}"##,
        "dc8bb72e493bd609499efd13c259748c5983c745fcd043d80e4f122542321708",
    ),
    (
        r##"{"x":1.0e0}"##,
        r##"{"x": 1.0}"##,
        "857628e420fdb53d38621c15f4b6f7627db49f87867f064ed831693c2be27e60",
    ),
    (
        r##"{"x":-0.0e0}"##,
        r##"{"x": -0.0}"##,
        "3e00e84fd9d396f6f2b3129cd68f7ec8c7d2b23bce186c9e1382244e01f691ed",
    ),
    (
        r##"{"astral_key😀":1,"astral_key￿":2}"##,
        r##"{"astral_key\uffff": 2, "astral_key\ud83d\ude00": 1}"##,
        "86aebbcda36ea9e4d8ee669353b975c6860f2688f6ca2107e4e8b2fcec258165",
    ),
];
