# A small module system in plain Nix, shaped like nixpkgs' lib.evalModules:
# options + config, imports, mkIf / mkMerge / mkDefault / mkForce, typed merges.
# It exists because this example must evaluate offline with Nix 2.8 and
# without nixpkgs; modules written against it read like NixOS modules.
let
  inherit (builtins)
    all attrNames concatMap concatStringsSep elem filter foldl' functionArgs
    genericClosure head intersectAttrs isAttrs isBool isFunction isInt isList
    isPath isString length listToAttrs mapAttrs substring tail toJSON typeOf;

  showPath = concatStringsSep ".";
  isType = t: v: isAttrs v && (v._type or null) == t;
  isOption = isType "option";
  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];

  # --- properties ----------------------------------------------------------
  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkMerge = contents: { _type = "merge"; inherit contents; };
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  mkDefault = mkOverride 1000;
  mkForce = mkOverride 50;
  mkOptionDefault = mkOverride 1500;
  defaultPriority = 100;

  # Resolve mkIf/mkMerge/mkOverride of one definition into plain values.
  discharge = prio: v:
    if isType "if" v then
      (if !isBool v.condition then throw "mkIf called with a non-boolean condition"
       else if v.condition then discharge prio v.content else [ ])
    else if isType "merge" v then concatMap (discharge prio) v.contents
    else if isType "override" v then discharge v.priority v.content
    else [ { priority = prio; value = v; } ];

  # The definitions a config value makes for the option at `loc`, with mkIf
  # pushed down lazily (conditions are not forced here).
  defsAt = file: v: loc:
    if loc == [ ] then [ v ]
    else if isType "if" v then map (d: mkIf v.condition d) (defsAt file v.content loc)
    else if isType "merge" v then concatMap (c: defsAt file c loc) v.contents
    else if isType "override" v then map (mkOverride v.priority) (defsAt file v.content loc)
    else if isAttrs v then (if v ? ${head loc} then defsAt file v.${head loc} (tail loc) else [ ])
    else throw "${file}: expected an attribute set where `${head loc}' is defined, got a ${typeOf v}";

  # Merge a list of { file; value; } (values may carry properties).
  evalDefs = loc: type: defs:
    let
      discharged = concatMap (d: map (p: p // { inherit (d) file; }) (discharge defaultPriority d.value)) defs;
      best = foldl' (m: d: if d.priority < m then d.priority else m) 100000 discharged;
      active = filter (d: d.priority == best) discharged;
      checked = map (d:
        if type.check d.value then d
        else throw "A definition for option `${showPath loc}' is not of type `${type.name}' (in ${d.file}).") active;
    in { isDefined = active != [ ]; value = type.merge loc checked; };

  mergeEqual = name: loc: defs:
    let first = head defs; in
    if all (d: d.value == first.value) defs then first.value
    else throw "The option `${showPath loc}' (${name}) has conflicting definitions in: ${concatStringsSep ", " (map (d: d.file) defs)}";

  mergeAttrsOf = t: loc: defs:
    let
      names = unique (concatMap (d: attrNames d.value) defs);
      one = n: evalDefs (loc ++ [ n ]) t (concatMap (d: if d.value ? ${n} then [ { inherit (d) file; value = d.value.${n}; } ] else [ ]) defs);
      all' = map (n: { name = n; value = one n; }) names;
    in listToAttrs (map (e: { inherit (e) name; value = e.value.value; }) (filter (e: e.value.isDefined) all'));

  isDerivation = v: isAttrs v && (v.type or null) == "derivation";

  mkType = { name, check ? (_: true), merge ? mergeEqual name }: { _type = "type"; inherit name check merge; };

  types = rec {
    anything = mkType {
      name = "anything";
      merge = loc: defs:
        let vs = map (d: d.value) defs; in
        if all (v: isAttrs v && !isDerivation v) vs then mergeAttrsOf anything loc defs
        else if all isList vs then concatMap (d: d.value) defs
        else mergeEqual "anything" loc defs;
    };
    str = mkType { name = "string"; check = isString; };
    bool = mkType { name = "boolean"; check = isBool; };
    int = mkType { name = "integer"; check = isInt; };
    path = mkType { name = "path"; check = v: isPath v || (isString v && substring 0 1 v == "/"); };
    package = mkType { name = "package"; check = isAttrs; };
    lines = mkType { name = "lines"; check = isString; merge = loc: defs: concatStringsSep "\n" (map (d: d.value) defs); };
    enum = values: mkType { name = "one of ${concatStringsSep ", " (map toJSON values)}"; check = v: elem v values; };
    nullOr = t: mkType {
      name = "null or ${t.name}";
      check = v: v == null || t.check v;
      merge = loc: defs:
        let set = filter (d: d.value != null) defs; in
        if set == [ ] then null
        else if length set == length defs then t.merge loc defs
        else throw "The option `${showPath loc}' is defined both null and not null.";
    };
    listOf = t: mkType { name = "list of ${t.name}"; check = v: isList v && all t.check v; merge = loc: defs: concatMap (d: d.value) defs; };
    attrsOf = t: mkType { name = "attribute set of ${t.name}"; check = isAttrs; merge = mergeAttrsOf t; };
  };

  mkOption = { type ? types.anything, description ? "", example ? null, ... }@args:
    { _type = "option"; inherit type description; } // (if args ? default then { inherit (args) default; } else { });
  mkEnableOption = what: mkOption { type = types.bool; default = false; description = "Whether to enable ${what}."; };

  # Evaluate modules (paths, functions or attribute sets) into { config, options }.
  evalModules = { modules, specialArgs ? { } }:
    let
      args = { inherit config options; } // specialArgs;
      load = key: file: m:
        let
          fn = if isPath m || isString m then import m else m;
          v = if !isFunction fn then fn
              else if functionArgs fn == { } then fn args
              else fn (intersectAttrs (functionArgs fn) args);
          structured = v ? options || v ? config;
          name = if isPath m || isString m then toString m else file;
        in {
          inherit key;
          file = name;
          imports = v.imports or [ ];
          options = v.options or { };
          config = if structured then v.config or { } else removeAttrs v [ "imports" "_file" ];
        };
      start = builtins.genList (i: let m = builtins.elemAt modules i; in
        load (if isPath m then toString m else "<modules>:${toString i}") "<modules>" m) (length modules);
      mods = genericClosure {
        startSet = start;
        operator = item: builtins.genList (i: let m = builtins.elemAt item.imports i; in
          load (if isPath m then toString m else "${item.key}:${toString i}") item.file m) (length item.imports);
      };

      mergeDecls = loc: a: b: a // mapAttrs (n: bv:
        if !(a ? ${n}) then bv
        else if isOption bv || isOption a.${n} then throw "The option `${showPath (loc ++ [ n ])}' is declared twice."
        else mergeDecls (loc ++ [ n ]) a.${n} bv) b;
      options = foldl' (acc: m: mergeDecls [ ] acc m.options) { } mods;

      optionValue = loc: opt:
        let
          defs = concatMap (m: map (v: { inherit (m) file; value = v; }) (defsAt m.file m.config loc)) mods;
          withDefault = defs ++ (if opt ? default then [ { file = "the option's default"; value = mkOptionDefault opt.default; } ] else [ ]);
          r = evalDefs loc opt.type withDefault;
        in if r.isDefined then r.value else throw "The option `${showPath loc}' is used but not defined.";
      build = loc: tree: mapAttrs (n: o: if isOption o then optionValue (loc ++ [ n ]) o else build (loc ++ [ n ]) o) tree;
      config = build [ ] options;

      # Every definition must belong to a declared option (as in NixOS).
      check = loc: tree: file: v:
        if isType "if" v || isType "override" v then check loc tree file v.content
        else if isType "merge" v then all (check loc tree file) v.contents
        else if isAttrs v then all (n:
          if !(tree ? ${n}) then throw "The option `${showPath (loc ++ [ n ])}' does not exist (defined in ${file})."
          else isOption tree.${n} || check (loc ++ [ n ]) tree.${n} file v.${n}) (attrNames v)
        else throw "The option `${showPath loc}' does not exist: ${file} defines it as a ${typeOf v}.";
      checked = all (m: check [ ] options m.file m.config) mods;
    in {
      inherit options;
      config = builtins.seq checked config;
    };
in
{
  inherit evalModules mkOption mkEnableOption mkIf mkMerge mkOverride mkDefault mkForce
    mkOptionDefault types isDerivation;
}
