package docker

import (
	"context"
	"fmt"
	"slices"

	"github.com/distribution/reference"
	"github.com/moby/moby/client"
)

// TagImage gives the local image id (an image ID or any reference to a
// local image) the tag ref ("latest" if ref has none), moving ref from any
// image it named before. A digest reference is refused.
func (c *Client) TagImage(ctx context.Context, id, ref string) error {
	named, err := parseRef(ref)
	if err != nil {
		return err
	}
	if _, ok := named.(reference.Digested); ok {
		return fmt.Errorf("tag image %s as %q: a tag cannot be a digest", id, ref)
	}
	target := reference.FamiliarString(reference.TagNameOnly(named))
	if _, err := c.api.ImageTag(ctx, client.ImageTagOptions{Source: id, Target: target}); err != nil {
		return fmt.Errorf("tag image %s as %q: %w", id, target, fault(err))
	}
	return nil
}

// ListTags returns the tagged references ("repository:tag", in Docker's
// short form, sorted) of the local images in repository, which is a name
// without tag or digest ("busybox", "127.0.0.1:5000/x/y"). A repository
// with no local images has none.
func (c *Client) ListTags(ctx context.Context, repository string) ([]string, error) {
	repo, err := parseRef(repository)
	if err != nil {
		return nil, err
	}
	if !reference.IsNameOnly(repo) {
		return nil, fmt.Errorf("list tags of %q: want a repository name without tag or digest", repository)
	}
	res, err := c.api.ImageList(ctx, client.ImageListOptions{
		Filters: make(client.Filters).Add("reference", reference.FamiliarName(repo)),
	})
	if err != nil {
		return nil, fmt.Errorf("list images of %q: %w", repository, fault(err))
	}
	// The filter also matches by pattern and returns every tag of each
	// matching image, so keep only this repository's tags.
	var tags []string
	for _, img := range res.Items {
		for _, rt := range img.RepoTags {
			named, err := reference.ParseNormalizedNamed(rt)
			if err != nil || named.Name() != repo.Name() {
				continue // "<none>:<none>" and other repositories
			}
			if _, ok := named.(reference.Tagged); ok {
				tags = append(tags, reference.FamiliarString(named))
			}
		}
	}
	slices.Sort(tags)
	return slices.Compact(tags), nil
}
