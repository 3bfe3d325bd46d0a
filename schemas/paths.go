package schemas

// MemberPath appends the object member name to a Problem path, as the
// validator writes it: ".name" for identifiers, `["name"]` otherwise.
func MemberPath(base, name string) string { return memberPath(base, name) }

// IndexPath appends the array index i to a Problem path ("[i]").
func IndexPath(base string, i int) string { return indexPath(base, i) }
