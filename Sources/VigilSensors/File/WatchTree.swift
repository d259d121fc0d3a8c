/// The watched directories as a tree keyed by watch descriptor.
///
/// Each node keeps its full path, so looking a path up per event is one dictionary access,
/// and a directory renamed inside the trees is one `move` that rewrites the paths below it.
struct WatchTree {
    struct Node {
        /// The parent's watch descriptor; -1 for a root.
        var parent: Int32
        /// The entry name in the parent; a root's full path.
        var name: String
        var path: String
        var children: [String: Int32] = [:]
    }

    private(set) var nodes: [Int32: Node] = [:]

    var count: Int { nodes.count }

    func path(of wd: Int32) -> String? {
        nodes[wd]?.path
    }

    func isRoot(_ wd: Int32) -> Bool {
        nodes[wd]?.parent == -1
    }

    func child(of parent: Int32, named name: String) -> Int32? {
        nodes[parent]?.children[name]
    }

    enum InsertOutcome {
        case added
        /// The descriptor is already in the tree (the kernel returns the same descriptor for
        /// the same inode: a second path to it, e.g. a bind mount, or a repeated report).
        case known
    }

    mutating func insert(wd: Int32, parent: Int32, name: String, path: String) -> InsertOutcome {
        guard nodes[wd] == nil else { return .known }
        nodes[wd] = Node(parent: parent, name: name, path: path)
        if parent >= 0 {
            nodes[parent]?.children[name] = wd
        }
        return .added
    }

    /// Removes one node (its watch is gone); children stay until their own removal.
    @discardableResult
    mutating func remove(_ wd: Int32) -> Node? {
        guard let node = nodes.removeValue(forKey: wd) else { return nil }
        if node.parent >= 0, nodes[node.parent]?.children[node.name] == wd {
            nodes[node.parent]?.children[node.name] = nil
        }
        return node
    }

    /// `wd` and everything below it, parents first.
    func subtree(_ wd: Int32) -> [Int32] {
        guard nodes[wd] != nil else { return [] }
        var result: [Int32] = [wd]
        var index = 0
        while index < result.count {
            if let children = nodes[result[index]]?.children {
                for child in children.values where nodes[child] != nil { result.append(child) }
            }
            index += 1
            if result.count > nodes.count { break }  // a cycle would be a bug; never loop forever
        }
        return result
    }

    /// Removes `wd` and everything below it; returns the removed descriptors.
    mutating func removeSubtree(_ wd: Int32) -> [Int32] {
        let all = subtree(wd)
        for node in all.reversed() { remove(node) }
        return all
    }

    /// A directory renamed within the trees: re-parent it and rewrite the paths below it.
    mutating func move(_ wd: Int32, toParent parent: Int32, name: String, path: String) {
        guard let node = nodes[wd] else { return }
        if node.parent >= 0, nodes[node.parent]?.children[node.name] == wd {
            nodes[node.parent]?.children[node.name] = nil
        }
        nodes[wd]?.parent = parent
        nodes[wd]?.name = name
        if parent >= 0 { nodes[parent]?.children[name] = wd }
        nodes[wd]?.path = path
        for child in subtree(wd).dropFirst() {
            guard let childNode = nodes[child], let parentPath = nodes[childNode.parent]?.path else { continue }
            nodes[child]?.path = PathRules.join(parentPath, childNode.name)
        }
    }
}
