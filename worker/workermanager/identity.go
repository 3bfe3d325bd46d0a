package workermanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// Static is the identity of a static worker: worker-manager knows it by
// the secret given to createWorker.
func Static(providerID, workerPoolID, workerGroup, workerID, staticSecret string) Identity {
	return Identity{
		ProviderID:   providerID,
		WorkerPoolID: workerPoolID,
		WorkerGroup:  workerGroup,
		WorkerID:     workerID,
		Proof:        map[string]string{"staticSecret": staticSecret},
	}
}

// Facts are what the instance tells about itself, as worker-runner's aws
// provider passes them to the worker.
type Facts struct {
	InstanceID       string
	InstanceType     string
	Region           string
	AvailabilityZone string
	PrivateIP        string
	PublicIP         string
	// Host is the instance's public host name ("" when it has none).
	Host string
	// WorkerLocation is TASKCLUSTER_WORKER_LOCATION's object:
	// {cloud: aws, region, availabilityZone}.
	WorkerLocation map[string]any
}

// UserData is the JSON object worker-manager's aws provider puts in an
// instance's user-data.
type UserData struct {
	WorkerPoolID string `json:"workerPoolId"`
	ProviderID   string `json:"providerId"`
	WorkerGroup  string `json:"workerGroup"`
	RootURL      string `json:"rootUrl"`
}

// Instance is what the aws provider reads from instance metadata.
type Instance struct {
	Identity Identity
	UserData UserData
	Facts    Facts
}

// Instance metadata paths read by [AWS].
const (
	IdentityDocumentPath  = "instance-identity/document"  // dynamic data
	IdentitySignaturePath = "instance-identity/signature" // dynamic data
	PublicIPv4Path        = "public-ipv4"
	LocalIPv4Path         = "local-ipv4"
	PublicHostnamePath    = "public-hostname"
)

// AWS reads the worker's identity from EC2 instance metadata over IMDSv2
// (endpoint "" is the SDK's default, http://169.254.169.254 unless
// $AWS_EC2_METADATA_SERVICE_ENDPOINT says otherwise): the instance
// identity document and its signature (the proof registerWorker checks),
// the user-data worker-manager wrote (pool, provider, region, root URL),
// and the host facts. The worker ID is the instance ID and the worker
// group the region, as worker-manager's aws provider names them.
func AWS(ctx context.Context, endpoint string) (*Instance, error) {
	c := imds.New(imds.Options{Endpoint: endpoint})
	doc, err := dynamic(ctx, c, IdentityDocumentPath)
	if err != nil {
		return nil, err
	}
	sig, err := dynamic(ctx, c, IdentitySignaturePath)
	if err != nil {
		return nil, err
	}
	var d struct {
		InstanceID       string `json:"instanceId"`
		InstanceType     string `json:"instanceType"`
		Region           string `json:"region"`
		AvailabilityZone string `json:"availabilityZone"`
		PrivateIP        string `json:"privateIp"`
	}
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return nil, fmt.Errorf("instance identity document: %w", err)
	}
	if d.InstanceID == "" || d.Region == "" {
		return nil, errors.New("instance identity document: no instanceId or region")
	}
	ud, err := userData(ctx, c)
	if err != nil {
		return nil, err
	}
	var u UserData
	if err := json.Unmarshal([]byte(ud), &u); err != nil {
		return nil, fmt.Errorf("user-data is not worker-manager's JSON object: %w", err)
	}
	if u.WorkerPoolID == "" || u.ProviderID == "" || u.RootURL == "" {
		return nil, errors.New("user-data lacks workerPoolId, providerId or rootUrl: was the instance started by worker-manager?")
	}
	if u.WorkerGroup == "" {
		u.WorkerGroup = d.Region
	}
	facts := Facts{
		InstanceID:       d.InstanceID,
		InstanceType:     d.InstanceType,
		Region:           d.Region,
		AvailabilityZone: d.AvailabilityZone,
		PrivateIP:        d.PrivateIP,
		WorkerLocation:   map[string]any{"cloud": "aws", "region": d.Region, "availabilityZone": d.AvailabilityZone},
	}
	// Optional facts: an instance without a public address answers 404.
	for path, into := range map[string]*string{
		LocalIPv4Path:      &facts.PrivateIP,
		PublicIPv4Path:     &facts.PublicIP,
		PublicHostnamePath: &facts.Host,
	} {
		v, found, err := metadata(ctx, c, path)
		if err != nil {
			return nil, err
		}
		if found {
			*into = v
		}
	}
	return &Instance{
		Identity: Identity{
			ProviderID:   u.ProviderID,
			WorkerPoolID: u.WorkerPoolID,
			WorkerGroup:  u.WorkerGroup,
			WorkerID:     d.InstanceID,
			Proof:        map[string]string{"document": doc, "signature": sig},
		},
		UserData: u,
		Facts:    facts,
	}, nil
}

// maxMetadata bounds what is read of one metadata answer.
const maxMetadata = 256 << 10

func dynamic(ctx context.Context, c *imds.Client, path string) (string, error) {
	out, err := c.GetDynamicData(ctx, &imds.GetDynamicDataInput{Path: path})
	if err != nil {
		return "", fmt.Errorf("instance metadata dynamic/%s: %w", path, err)
	}
	defer out.Content.Close()
	return readAll(out.Content, "dynamic/"+path)
}

func userData(ctx context.Context, c *imds.Client) (string, error) {
	out, err := c.GetUserData(ctx, &imds.GetUserDataInput{})
	if err != nil {
		return "", fmt.Errorf("instance metadata user-data: %w", err)
	}
	defer out.Content.Close()
	return readAll(out.Content, "user-data")
}

// metadata reads meta-data/path; found is false when it is absent (404).
func metadata(ctx context.Context, c *imds.Client, path string) (string, bool, error) {
	out, err := c.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		var status interface{ HTTPStatusCode() int }
		if errors.As(err, &status) && status.HTTPStatusCode() == http.StatusNotFound {
			return "", false, nil
		}
		return "", false, fmt.Errorf("instance metadata meta-data/%s: %w", path, err)
	}
	defer out.Content.Close()
	s, err := readAll(out.Content, "meta-data/"+path)
	return s, err == nil, err
}

func readAll(r io.Reader, what string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxMetadata))
	if err != nil {
		return "", fmt.Errorf("instance metadata %s: read: %w", what, err)
	}
	return strings.TrimSpace(string(b)), nil
}
